"""numba intrinsics that also run uncompiled: bit scans, and the decorator the other intrinsics use.

An intrinsic only compiles; called from Python it raises. The kernels' unit tests run once under
NUMBA_DISABLE_JIT=1 so that coverage sees the kernels' lines, and there each intrinsic is replaced
by a Python twin with the same int64 semantics (numba.config.DISABLE_JIT is read at import).
"""
from __future__ import annotations

from typing import Callable

import numba
from numba.extending import intrinsic


def intrinsic_or(twin: Callable) -> Callable:
    """numba's @intrinsic, or under NUMBA_DISABLE_JIT (where an intrinsic cannot run) `twin` instead."""
    if numba.config.DISABLE_JIT:
        return lambda typer: twin
    return intrinsic


if numba.config.DISABLE_JIT:  # numba's intrinsics only compile: Python twins for the uncompiled pass
    _WORD = (1 << 64) - 1

    def leading_zeros(value: int) -> int:
        """Leading zero bits of `value` as an int64 word: 64 for 0, 0 for a negative value."""
        return 64 - (int(value) & _WORD).bit_length()

    def trailing_zeros(value: int) -> int:
        """Trailing zero bits of `value` as an int64 word: 64 for 0."""
        word = int(value) & _WORD
        return (word & -word).bit_length() - 1 if word else 64
else:
    from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

__all__ = ["intrinsic_or", "leading_zeros", "trailing_zeros"]
