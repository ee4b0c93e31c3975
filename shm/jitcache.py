"""Where numba keeps compiled kernels for this code base.

numba checks a cached function against its own source file only: a kernel that inlined a helper
from another module keeps the old helper after that module changes. Keying the cache directory
on a hash of every source file of the packages that hold kernels (shm, feedhandler; and the numba
and Python versions) makes any change there start a fresh cache. Kernels elsewhere (benchmarks) use
only those packages' helpers, and numba checks their own files itself. A user's own
NUMBA_CACHE_DIR wins.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numba

PACKAGES = ("shm", "feedhandler")


def _source_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{numba.__version__} {sys.version}".encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def configure() -> str:
    """Point numba's cache at a directory for exactly this source; returns it."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fh" / "numba"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if not os.access(base, os.W_OK):
            raise PermissionError(base)
    except OSError:
        base = Path(tempfile.gettempdir()) / f"fh-numba-{os.getuid()}"
    directory = str(base / _source_digest())
    numba.config.CACHE_DIR = directory
    return directory
