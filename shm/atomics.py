"""Acquire/release memory-ordering primitives for numba code that shares memory across processes.

A plain array load in a numba spin loop is loop-invariant to LLVM and gets hoisted, so a reader
never sees another process's store. Every word another process polls goes through these. On x86
acquire/release compile to plain moves plus a compiler barrier; on ARM to ldar/stlr.
"""
from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils

from .intrinsics import intrinsic_or


def _element_pointer(context, builder, arr_type, arr_value, idx_type, idx_value):
    array = context.make_array(arr_type)(context, builder, arr_value)
    index = context.cast(builder, idx_value, idx_type, types.intp)
    return cgutils.get_item_pointer(context, builder, arr_type, array, [index], wraparound=False)


def _is_int64_vector(arr) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64


@intrinsic_or(operator.getitem)  # arr[idx]: the interpreter does not reorder memory accesses
def load_acquire(typingctx, arr, idx):
    """`arr[idx]` as an atomic acquire load (int64, 1-D array; no bounds check)."""
    if not (_is_int64_vector(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic_or(operator.setitem)  # arr[idx] = value
def store_release(typingctx, arr, idx, value):
    """`arr[idx] = value` as an atomic release store (int64, 1-D writable array; no bounds check)."""
    if not (_is_int64_vector(arr) and arr.mutable and isinstance(idx, types.Integer)
            and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        stored = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(stored, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


def _fence(ordering: str):
    @intrinsic_or(lambda: None)
    def fence(typingctx):
        def codegen(context, builder, signature, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


fence_acquire = _fence("acquire")
fence_acquire.__doc__ = "Orders every earlier load before every later load and store."
fence_release = _fence("release")
fence_release.__doc__ = "Orders every earlier load and store before every later store."

__all__ = ["load_acquire", "store_release", "fence_acquire", "fence_release"]


@intrinsic_or(lambda arr, idx: None)  # a hint only
def prefetch_for_write(typingctx, arr, idx):
    """Hint that `arr[idx]`'s cache line is about to be written: issue its ownership request now,
    so the requests for several lines overlap instead of stalling one by one at store commit."""
    if not (_is_int64_vector(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen
