"""Operator tools: the `fh` command line and its benchmarks."""
import shm as _shm  # noqa: F401  (sets up the numba cache before any kernel here is defined)
