"""Nanosecond clocks callable from numba (clock_gettime through the vDSO, no Python on the way)."""
from __future__ import annotations

import ctypes
import ctypes.util
import time

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils

from .intrinsics import intrinsic_or

CLOCK_REALTIME = time.CLOCK_REALTIME
CLOCK_MONOTONIC = time.CLOCK_MONOTONIC

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
llvm.add_symbol("clock_gettime", ctypes.cast(_libc.clock_gettime, ctypes.c_void_p).value)


@intrinsic_or(time.clock_gettime_ns)
def _clock_ns(typingctx, clock_id):
    if not isinstance(clock_id, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])
        fn_type = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        clock_gettime = cgutils.get_or_insert_function(builder.module, fn_type, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        cid = context.cast(builder, args[0], signature.args[0], types.int32)
        builder.call(clock_gettime, [cid, ts])
        sec = builder.load(builder.gep(ts, [i32(0), i32(0)]))
        nsec = builder.load(builder.gep(ts, [i32(0), i32(1)]))
        return builder.add(builder.mul(sec, i64(1_000_000_000)), nsec)

    return types.int64(clock_id), codegen


@njit(inline="always", nogil=True)
def realtime_ns() -> int:
    """CLOCK_REALTIME in ns: comparable with venue and receive timestamps."""
    return _clock_ns(CLOCK_REALTIME)


@njit(inline="always", nogil=True)
def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns: system-wide, for cross-process latency on one host."""
    return _clock_ns(CLOCK_MONOTONIC)
