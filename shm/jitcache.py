"""Where numba keeps compiled kernels for this code base.

numba checks a cached function against its own source file only: a kernel that inlined a helper
from another module keeps the old helper after that module changes. Keying the cache directory
on a hash of every source file of the packages that hold kernels (shm, feedhandler; and the numba
and Python versions) makes any change there start a fresh cache. Kernels elsewhere (benchmarks) use
only those packages' helpers, and numba checks their own files itself. A user's own
NUMBA_CACHE_DIR wins.

The cache is loaded as code, so a fallback in the shared temporary directory is used only when it
is a real directory of this uid that nobody else can write (created 0700); otherwise this process
compiles into a fresh private directory, removed at exit, and says so.

Several processes fill one cache at once (`fh warmup` compiles kernel groups in parallel, the
workers of `fh run` on a cold cache each compile theirs). numba writes each cache file atomically
(a temporary file, then a rename), but adds an entry to a function's index (signature -> data file)
by an unlocked read-modify-write that names the data file before writing it: two processes saving
two signatures of one function at once can both take data file 1, and the index then maps one
signature to the other's machine code. `serialize_saves` makes each save hold an flock on the
cache directory and write the data before the index entry that names it.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import itertools
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numba
from numba.core import caching
from numba.core.dispatcher import Dispatcher
from numba.core.typing.typeof import Purpose, typeof

PACKAGES = ("shm", "feedhandler")
SAVE_LOCK = ".fh-save.lock"  # in each cache directory numba writes


def _source_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{numba.__version__} {sys.version}".encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def configure() -> str:
    """Point numba's cache at a directory for exactly this source, saves to it serialized across
    processes (`serialize_saves`); returns it."""
    serialize_saves()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fh" / "numba"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if not os.access(base, os.W_OK):
            raise PermissionError(base)
    except OSError:
        base = _private_fallback()
    directory = str(base / _source_digest())
    numba.config.CACHE_DIR = directory
    return directory


def _private_fallback() -> Path:
    """`<tmp>/fh-numba-<uid>` while it is this uid's own directory that no one else can write; else a
    fresh private directory, removed at exit (someone else could have put code in the shared name)."""
    path = Path(tempfile.gettempdir()) / f"fh-numba-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return _fresh(f"{path} cannot be made ({exc})")
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
        return path
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a directory"
    return _fresh(f"{path} is {kind} of uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}: not this uid's own")


def _fresh(why: str) -> Path:
    path = tempfile.mkdtemp(prefix="fh-numba-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    logging.getLogger("fh.jitcache").warning("numba cache %s; not used: compiling into %s for this process only",
                                             why, path)
    return Path(path)


def _locked_save(self: caching.IndexDataCacheFile, key: object, data: object) -> None:
    """numba's IndexDataCacheFile.save under an exclusive flock of the cache directory: the index is
    read, the data file written, then the index naming it, with no other save in between."""
    with open(os.path.join(self._cache_path, SAVE_LOCK), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        overloads = self._load_index()
        name = overloads.get(key)
        if name is None:
            taken = set(overloads.values())
            name = next(n for n in map(self._data_name, itertools.count(1)) if n not in taken)
        self._save_data(name, data)
        if overloads.get(key) != name:
            overloads[key] = name
            self._save_index(overloads)


def serialize_saves() -> None:
    """Make every numba cache save of this process take the cache directory's lock (idempotent)."""
    caching.IndexDataCacheFile.save = _locked_save


def entry(kernel: Callable, *args: object) -> Callable:
    """`kernel` compiled (or loaded from the cache) for exactly the types of `args`, as its compiled
    entry: a call skips numba's dispatcher, which types every argument on every call (~1 µs for a
    venue step's arguments, more than the rest of the call). Only arguments of those same types may
    be passed to it: the entry converts them without checking (an array of another dtype would be
    read as the wrong one). Without JIT (NUMBA_DISABLE_JIT) the kernel is the Python function itself."""
    if not isinstance(kernel, Dispatcher):
        return kernel
    return kernel.compile(tuple(typeof(arg, Purpose.argument) for arg in args))
