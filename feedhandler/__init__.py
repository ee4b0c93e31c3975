"""The venue side: fixed-point books, venue adapters and decoders."""
import shm as _shm  # noqa: F401  (sets up the numba cache before any kernel here is defined)
