"""What every fh process does at start: pin itself, name itself, log, take the run's shared-memory
access (its stop signal: lifecycle.Stop), hold the lock of its role so that no second instance runs
beside it, and (a child of `fh run`) die with its supervisor."""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable

from feedhandler.config import RunConfig
from shm.inventory import LOCK_NAME, listing  # lock files are `<shm dir>/<prefix>.lock.<role>`
from shm.segment import segment_path
_PR_SET_PDEATHSIG = 1


def pin(cpu: int | None) -> list[int]:
    """Pin this process to `cpu` (None: leave the affinity alone); returns the affinity now."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return sorted(os.sched_getaffinity(0))


def set_title(title: str) -> None:
    """A readable process title for ps/top (`fh: venue binance`)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the context fields of the process
    and of the call (`extra={"conn": 1, "reason": "stale"}`), for log shippers and jq."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        event.update((key, value) for key, value in vars(record).items() if key not in self._STANDARD)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)

    converter = time.gmtime


def setup_logging(name: str, run: RunConfig | None = None, **context: object) -> logging.Logger:
    """Logging of this process to stderr: level and format from the run config, FH_LOG_LEVEL and
    FH_LOG_FORMAT winning; `context` (venue, sink, ...) goes on every record."""
    level = os.environ.get("FH_LOG_LEVEL") or (run.log_level if run else "info")
    json_lines = (os.environ.get("FH_LOG_FORMAT") or (run.log_format if run else "text")) == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else
                         logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    if context:
        def add_context(record: logging.LogRecord) -> bool:
            for key, value in context.items():
                setattr(record, key, getattr(record, key, value))
            return True
        handler.addFilter(add_context)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return logging.getLogger(name)


def apply_shm_access(run: RunConfig | None) -> None:
    """The run's `shm_group` and `writer_uid` as $FH_SHM_GROUP / $FH_SHM_WRITER_UID, which shm's
    writers and readers (and this process's children) take; variables already set win."""
    if run is None:
        return
    if run.shm_group:
        os.environ.setdefault("FH_SHM_GROUP", run.shm_group)
    if run.writer_uid is not None:
        os.environ.setdefault("FH_SHM_WRITER_UID", str(run.writer_uid))


def compiled_first(what: str, log: logging.Logger, compile_kernels: Callable[[str], object]) -> None:
    """Run `compile_kernels(prefix)` (numba compiling, or loading from its cache; `prefix` is private to
    this process, for the segments it drives kernels over) before the process creates anything of the
    run. SIGTERM or SIGINT meanwhile (a cold cache compiles for minutes, in code no event loop
    interrupts) removes what is under that prefix and exits 0 at once: an exception raised into
    numba's compiler can land in one of its C callbacks and leave the compiler broken."""
    prefix = f"fhwarm{os.getpid()}"

    def stop(signum: int, frame: object) -> None:
        for leftover in listing(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover.path)
        log.info("%s: stopped while compiling kernels", what)
        for handler in (*log.handlers, *logging.getLogger().handlers):
            handler.flush()
        os._exit(0)

    started = time.perf_counter()
    log.info("%s: loading kernels (a cold numba cache compiles them for minutes; `fh warmup` does it ahead)", what)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        compile_kernels(prefix)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("%s: kernels ready in %.1f s", what, time.perf_counter() - started)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster socket and timer paths), else asyncio's default."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class InstanceLockError(Exception):
    """This process cannot take its role: another live process holds it, or the lock file is not ours."""


class InstanceLock:
    """An exclusive `flock` on `<shm dir>/<prefix>.lock.<role>`, held until close() or exit, so a
    second sink, aggregator or supervisor of the same prefix refuses to start instead of running
    beside the first (duplicate deliveries). The file holds the holder's pid for the refusal; the
    kernel drops the lock when the holder dies, however it dies. `fh clean` removes a file nobody
    holds (`retire_lock`), so a lock taken on a file that is no longer at the path is taken again."""

    def __init__(self, prefix: str, role: str, directory: str | None = None):
        self.path = segment_path(prefix, LOCK_NAME + role, directory)
        while True:
            fd = self._lock(prefix, role)
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                break
            os.close(fd)  # removed (by fh clean) between our open and our lock: lock what is there now
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        self._fd = fd

    def _lock(self, prefix: str, role: str) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:  # e.g. ELOOP: a symlink planted in the shared directory
            raise InstanceLockError(f"{self.path}: cannot open the lock of {role} ({exc.strerror})") from None
        try:
            owner = os.fstat(fd).st_uid
            if owner != os.geteuid():
                raise InstanceLockError(f"{self.path} belongs to uid {owner}, not to this user "
                                        f"({os.geteuid()}); remove it or use another prefix")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstanceLockError(f"{role} of prefix {prefix!r} is already running (pid {_holder(fd)}, "
                                        f"lock {self.path}); stop it first") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        """Release the lock (the file stays: `fh clean` removes it once nobody holds it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode("ascii", "replace").partition("\n")[0] or "unknown"


def retire_lock(path: str) -> None:
    """Remove the instance lock file at `path` unless a live process holds it (InstanceLockError naming
    its pid) or it is not this user's regular file (InstanceLockError saying so). Removed while locked,
    so a process that opened it meanwhile finds it gone once it has the lock, and locks a new one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InstanceLockError(f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise InstanceLockError(f"{path}: not a lock file of this user (uid {st.st_uid})")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstanceLockError(f"{path}: held by a running process (pid {_holder(fd)})") from None
        os.unlink(path)
    finally:
        os.close(fd)


def die_with_parent(signal_number: int = signal.SIGTERM) -> Callable[[], None]:
    """A `Popen(preexec_fn=...)` making the child get `signal_number` when the calling process dies,
    even by SIGKILL (prctl PR_SET_PDEATHSIG, kept across exec). A parent already gone before the
    child armed it (the race prctl leaves) ends the child at once."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"prctl(PR_SET_PDEATHSIG): {os.strerror(code)}")
        if os.getppid() != parent:
            os._exit(1)
    return arm
