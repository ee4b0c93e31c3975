"""Segment files under /dev/shm: created and owned by one writer, mapped read-only by readers.

Plain files plus mmap, not `multiprocessing.shared_memory`: its resource tracker would unlink a
segment when any attaching process exits. The writer holds an exclusive `flock` on its file for
its whole life, which is how a second writer tells a live owner from a dead one's leftovers.

The directory is world-writable, so a name there proves nothing: a writer creates its file
exclusively (never through a symlink), 0600 or 0640 for a named group of readers ($FH_SHM_GROUP),
and refuses a file another user left at its name; a reader maps only a regular file owned by the
writer's uid (its own, or `writer_uid` / $FH_SHM_WRITER_UID) that no one else may write.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import stat
import struct
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .files import create_exclusive
from .layout import (
    BOOK_MAX_DEPTH, HEADER_BYTES, HEADER_NAME_AT, HEADER_NAME_BYTES, INSTRUMENT_DTYPE, LAYOUT_VERSION, MAGIC,
    N_COUNTERS, RING_CONTROL_WORDS, RING_WRITE_POS, SLOT_WORDS, Geometry, Header, State,
)

DEFAULT_DIR = "/dev/shm"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class SegmentError(Exception):
    """A segment is missing, busy, not trusted, or not what this code can read."""


@dataclass(frozen=True)
class InstrumentSpec:
    """One row of the instrument table: enough for a reader to interpret a book on its own."""

    venue_symbol: str
    symbol: str
    px_dec: int
    qty_dec: int
    capacity: int
    size_ccy: str = ""  # what a quantity unit is worth (layout.INSTRUMENT_DTYPE): "" names nothing, as
    size_mant: int = 1  # on a test's or a benchmark's table; venues name it
    size_dec: int = 0


def segment_path(prefix: str, name: str, directory: str | None = None) -> str:
    """`<dir>/<prefix>.<name>`; the directory defaults to $FH_SHM_DIR or /dev/shm."""
    for label, value in (("prefix", prefix), ("name", name)):
        if not _NAME.match(value):
            raise SegmentError(f"segment {label} {value!r} must be 1-64 of [A-Za-z0-9_.-] and not start with '.' or '-'")
    return os.path.join(directory or os.environ.get("FH_SHM_DIR", DEFAULT_DIR), f"{prefix}.{name}")


_READER_HINT = "set writer_uid / FH_SHM_WRITER_UID if another user runs the writer"
_WRITER_HINT = "another user left it at this writer's name; remove it once it is known to be stale"


def expected_writer_uid(writer_uid: int | None = None) -> int:
    """The uid whose files a reader trusts: `writer_uid`, else $FH_SHM_WRITER_UID, else its own."""
    if writer_uid is None:
        text = os.environ.get("FH_SHM_WRITER_UID", "")
        if not text:
            return os.geteuid()
        if not text.isdigit():
            raise SegmentError(f"FH_SHM_WRITER_UID={text!r}: expected a uid (a number >= 0)")
        writer_uid = int(text)
    return writer_uid


def open_trusted(path: str, writer_uid: int | None = None) -> int:
    """`path` opened read-only once it proves to be a regular file (not a symlink, FIFO or device)
    owned by the expected writer uid and writable by no one else; SegmentError naming what is wrong.
    FileNotFoundError when there is none."""
    return _open_checked(path, os.O_RDONLY, expected_writer_uid(writer_uid))


def _open_checked(path: str, flags: int, expected_uid: int, hint: str = _READER_HINT) -> int:
    """Open without following a symlink or blocking on a FIFO, then check what was opened."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SegmentError(f"{path} is a symbolic link: refusing to follow it (fh never makes one)") from None
        raise
    try:
        _check_trusted(path, os.fstat(fd), expected_uid, hint)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_trusted(path: str, st: os.stat_result, expected_uid: int, hint: str = _READER_HINT) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise SegmentError(f"{path} is a symbolic link: refusing to follow it (fh never makes one)")
    if not stat.S_ISREG(st.st_mode):
        raise SegmentError(f"{path} is not a regular file: refusing it")
    if st.st_uid != expected_uid:
        raise SegmentError(f"{path} is owned by uid {st.st_uid}, not the expected writer's uid {expected_uid}: "
                           f"refusing it ({hint})")
    if st.st_mode & 0o022:
        raise SegmentError(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): refusing it")


def refuse_foreign(path: str) -> None:
    """For a writer about to take `path`: SegmentError unless nothing is there or it is a regular
    file of this user (a dead writer's leftovers); another user's file is never taken over."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    _check_trusted(path, st, os.geteuid(), _WRITER_HINT)


def shm_group(group: str | None = None) -> str:
    """The group whose members may read what a writer creates: `group`, else $FH_SHM_GROUP ('': none)."""
    return os.environ.get("FH_SHM_GROUP", "") if group is None else group


def create_segment_file(path: str, group: str | None = None) -> int:
    """A new file at `path` (0600, or 0640 for `shm_group(group)`); SegmentError when something is
    already there (a name planted in the meantime) or the group does not exist."""
    try:
        return create_exclusive(path, shm_group(group))
    except FileExistsError:
        raise SegmentError(f"{path} appeared while this writer was creating it: refusing it") from None
    except ValueError as exc:
        raise SegmentError(f"{path}: shm group: {exc}") from None


class _Regions:
    """numpy views over a mapped segment, shared by the writer and reader classes."""

    _VIEWS = ("header", "instruments", "books", "ring_control", "ring", "counters")

    def __init__(self, buffer, geometry: Geometry):
        g = geometry
        self.geometry = g
        self.header = np.frombuffer(buffer, np.int64, HEADER_NAME_AT // 8, 0)
        self.instruments = np.frombuffer(buffer, INSTRUMENT_DTYPE, g.n_instruments, g.instruments_off)
        self.books = np.frombuffer(buffer, np.int64, g.n_instruments * g.block_words, g.books_off).reshape(
            g.n_instruments, g.block_words)
        ring_words = np.frombuffer(buffer, np.int64, g.ring_size // 8, g.ring_off)
        self.ring_control = ring_words[:RING_CONTROL_WORDS]
        self.ring = ring_words[RING_CONTROL_WORDS:].reshape(g.ring_slots, SLOT_WORDS)
        self.counters = np.frombuffer(buffer, np.int64, (g.n_instruments + 1) * N_COUNTERS, g.counters_off).reshape(
            g.n_instruments + 1, N_COUNTERS)


    def _unmap(self) -> None:
        """Drop our views and unmap; arrays a caller still holds keep the mapping alive until
        they are gone (unmapping under them would crash the process)."""
        for view in self._VIEWS:
            setattr(self, view, None)
        try:
            self._mmap.close()
        except BufferError:
            pass


# The writer holds a write lock (an open-file-description lock) on the segment's first byte for its
# whole life; the kernel drops it the moment the process dies, zombie or not. Readers test for it
# (F_OFD_GETLK places nothing, so probing never races a new writer taking over the name).
_LIVENESS_LOCK = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
_LIVENESS_PROBE = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 1, 0)


def hold_liveness_lock(fd: int) -> None:
    """Take the writer's liveness lock on `fd` (open for writing) for as long as it stays open."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _LIVENESS_LOCK)


def writer_holds_lock(fd: int) -> bool:
    """Whether a live process holds the liveness lock of the file open at `fd`."""
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _LIVENESS_PROBE)
    return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK


class SegmentWriter(_Regions):
    """The owning side of a segment. Create it with `SegmentWriter.create(...)`."""

    def __init__(self, path: str, fd: int, buffer: mmap.mmap, geometry: Geometry):
        super().__init__(buffer, geometry)
        self.path = path
        self._fd = fd
        self._mmap = buffer

    @classmethod
    def create(cls, prefix: str, name: str, instruments: Sequence[InstrumentSpec], depth: int,
               ring_slots: int, directory: str | None = None, labels: Sequence[str] = (),
               group: str | None = None) -> SegmentWriter:
        """Create `<prefix>.<name>`, replacing the leftovers of a dead writer; refuse a live one and
        anything another user left there. `labels` name what a segment numbers besides its
        instruments (an NBBO segment's venues); `group` may read it (default $FH_SHM_GROUP)."""
        geometry = Geometry(len(instruments), depth, ring_slots)
        identity = "\0".join([name, ",".join(labels)]).encode()
        if len(identity) > HEADER_NAME_BYTES or any("," in label or not label for label in labels):
            raise SegmentError(f"segment {name!r}: name and labels must fit {HEADER_NAME_BYTES} bytes, labels "
                               f"non-empty without commas")
        table = _instrument_table(instruments)
        path = segment_path(prefix, name, directory)
        lineage = retire(path)
        fd = create_segment_file(path, group)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            hold_liveness_lock(fd)
            os.ftruncate(fd, geometry.size)
            # Every page is allocated and mapped now: the first publish into a page must not fault.
            buffer = mmap.mmap(fd, geometry.size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        writer = cls(path, fd, buffer, geometry)
        writer._initialise(identity, table, lineage)
        return writer

    def _initialise(self, identity: bytes, table: np.ndarray, lineage: Lineage | None) -> None:
        self._mmap[HEADER_NAME_AT:HEADER_NAME_AT + len(identity)] = identity
        self.instruments[:] = table
        self.books[:, BOOK_MAX_DEPTH] = self.geometry.depth
        for field, value in self.geometry.header_words().items():
            self.header[field] = value
        now = time.time_ns()
        self.header[Header.WRITER_PID] = os.getpid()
        self.header[Header.START_NS] = now
        self.header[Header.HEARTBEAT_NS] = now
        self.header[Header.HEARTBEAT_MONO_NS] = time.monotonic_ns()
        self.header[Header.LINEAGE_NS] = lineage.start_ns if lineage else now
        self.header[Header.LINEAGE_BASE] = lineage.base if lineage else 0
        self.header[Header.PREV_START_NS] = lineage.previous_ns if lineage else 0
        self.header[Header.STATE] = State.OPEN  # last: readers reject a segment until it is open

    def heartbeat(self, now_ns: int | None = None, monotonic_ns: int | None = None) -> None:
        """Prove liveness to readers; call it at least every second (readers' default staleness is 5 s).
        Readers age it on CLOCK_MONOTONIC; `now_ns` (CLOCK_REALTIME) is the stamp records compare with."""
        self.header[Header.HEARTBEAT_NS] = time.time_ns() if now_ns is None else now_ns
        self.header[Header.HEARTBEAT_MONO_NS] = time.monotonic_ns() if monotonic_ns is None else monotonic_ns

    def close(self, unlink: bool = False) -> None:
        """Mark the segment closed (readers keep the last books) and release it."""
        if self._fd < 0:
            return
        self.heartbeat()
        self.header[Header.STATE] = State.CLOSED
        if unlink:
            os.unlink(self.path)
        self._release()

    def _release(self) -> None:
        self._unmap()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _instrument_table(instruments: Sequence[InstrumentSpec]) -> np.ndarray:
    table = np.zeros(len(instruments), INSTRUMENT_DTYPE)
    for row, spec in zip(table, instruments):
        for field in ("venue_symbol", "symbol"):
            text = getattr(spec, field).encode()
            if not text or len(text) > INSTRUMENT_DTYPE[field].itemsize:
                raise SegmentError(f"instrument {field} {getattr(spec, field)!r} must be 1-32 bytes")
            row[field] = text
        for field, top in (("px_dec", 18), ("qty_dec", 18)):
            if not 0 <= getattr(spec, field) <= top:
                raise SegmentError(f"instrument {spec.venue_symbol}: {field} must be 0..{top}")
        if spec.capacity < 1:
            raise SegmentError(f"instrument {spec.venue_symbol}: capacity must be >= 1")
        if spec.size_mant < 1 or not 0 <= spec.size_dec <= 18 or len(spec.size_ccy.encode()) > 16:
            raise SegmentError(f"instrument {spec.venue_symbol}: size {spec.size_mant}e-{spec.size_dec} "
                               f"{spec.size_ccy!r} must be a positive mantissa, 0..18 decimals, a currency of <= 16 bytes")
        row["px_dec"], row["qty_dec"], row["capacity"] = spec.px_dec, spec.qty_dec, spec.capacity
        row["size_mant"], row["size_dec"], row["size_ccy"] = spec.size_mant, spec.size_dec, spec.size_ccy.encode()
    return table


@dataclass(frozen=True)
class Lineage:
    """What a new writer inherits from the one it replaces (see Header.LINEAGE_NS)."""

    start_ns: int  # the lineage's first writer
    base: int  # records published before the new writer: the predecessor's base plus its final count
    previous_ns: int  # the predecessor's START_NS


def _lineage_of(fd: int, size: int) -> Lineage | None:
    """The lineage a dead writer's segment (its magic checked) passes on; None when its layout is
    another version's or its words do not add up."""
    if _header_word(fd, Header.VERSION) != LAYOUT_VERSION:
        return None
    ring_off, start = _header_word(fd, Header.RING_OFF), _header_word(fd, Header.START_NS)
    if not 0 < ring_off <= size - 8 * (RING_WRITE_POS + 1) or start <= 0:
        return None
    published = int.from_bytes(os.pread(fd, 8, ring_off + 8 * RING_WRITE_POS), "little", signed=True)
    first, base = _header_word(fd, Header.LINEAGE_NS), _header_word(fd, Header.LINEAGE_BASE)
    if published < 0 or base < 0:
        return None
    return Lineage(first if first > 0 else start, base + published, start)


def retire(path: str) -> Lineage | None:
    """Remove a segment whose writer is gone, marking it REPLACED for readers still mapped to it;
    returns the lineage it passes on (None: nothing was there, or nothing to pass on). A live
    writer's segment is refused (SegmentError naming its pid), and so is another user's file or a
    symlink at the name: neither followed nor taken over."""
    try:
        fd = _open_checked(path, os.O_RDWR, os.geteuid(), _WRITER_HINT)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = _header_word(fd, Header.WRITER_PID)
            raise SegmentError(f"{path} is owned by a live writer (pid {pid}); stop it first") from None
        lineage, size = None, os.fstat(fd).st_size
        if size >= HEADER_BYTES and _header_word(fd, Header.MAGIC) == MAGIC:
            lineage = _lineage_of(fd, size)
            os.pwrite(fd, int(State.REPLACED).to_bytes(8, "little", signed=True), Header.STATE * 8)
        os.unlink(path)
        return lineage
    finally:
        os.close(fd)


def _header_word(fd: int, field: Header) -> int:
    return int.from_bytes(os.pread(fd, 8, field * 8), "little", signed=True)


class Segment(_Regions):
    """A read-only mapping of a segment: the writer's memory cannot be changed through it. Only a
    segment of the expected writer uid (`writer_uid`, default $FH_SHM_WRITER_UID or our own) is mapped."""

    def __init__(self, prefix: str, name: str, directory: str | None = None, writer_uid: int | None = None):
        self.path = segment_path(prefix, name, directory)
        try:
            fd = open_trusted(self.path, writer_uid)
        except FileNotFoundError:
            raise SegmentError(f"no segment at {self.path}: is the writer for {name!r} running with prefix {prefix!r}?") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise SegmentError(f"{self.path}: {size} bytes is too small for a segment header")
            buffer = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
            header = np.frombuffer(buffer, np.int64, HEADER_NAME_AT // 8, 0)
            geometry = _validate(self.path, header, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd  # kept open to test the writer's liveness lock
        # closed by close(), by garbage collection, or at exit while the modules are whole (a __del__
        # could run after interpreter shutdown had emptied this module's globals)
        self._closer = weakref.finalize(self, os.close, fd)
        super().__init__(buffer, geometry)
        self._mmap = buffer
        try:
            identity = bytes(buffer[HEADER_NAME_AT:HEADER_BYTES]).rstrip(b"\0").decode()
        except UnicodeDecodeError:
            self.close()
            raise SegmentError(f"{self.path}: segment name is not UTF-8") from None
        name, _, labels = identity.partition("\0")
        self.name = name
        self.labels = tuple(labels.split(",")) if labels else ()

    @property
    def state(self) -> State:
        return State(int(self.header[Header.STATE]))

    @property
    def writer_pid(self) -> int:
        return int(self.header[Header.WRITER_PID])

    def heartbeat_age_s(self) -> float:
        """Since the writer's last heartbeat, on CLOCK_MONOTONIC: a step of the wall clock neither makes
        a live writer look stale nor a hung one fresh."""
        return (time.monotonic_ns() - int(self.header[Header.HEARTBEAT_MONO_NS])) / 1e9

    def writer_alive(self, stale_after_s: float = 5.0) -> bool:
        """Open, its writer process still running (its lock is held), and its heartbeat recent."""
        return (self.state == State.OPEN and self.heartbeat_age_s() <= stale_after_s
                and self._fd >= 0 and writer_holds_lock(self._fd))

    def close(self) -> None:
        if self._fd >= 0:
            self._closer()
            self._fd = -1
        self._unmap()

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _validate(path: str, header: np.ndarray, size: int) -> Geometry:
    if int(header[Header.MAGIC]) != MAGIC:
        raise SegmentError(f"{path} is not an fh segment (bad magic)")
    if int(header[Header.VERSION]) != LAYOUT_VERSION:
        raise SegmentError(f"{path} has layout version {int(header[Header.VERSION])}; this reader knows {LAYOUT_VERSION}")
    if int(header[Header.STATE]) == State.INITIALIZING:
        raise SegmentError(f"{path} is still being initialised by its writer; retry")
    try:
        geometry = Geometry(int(header[Header.N_INSTRUMENTS]), int(header[Header.DEPTH]),
                            int(header[Header.RING_SLOTS]))
    except ValueError as exc:
        raise SegmentError(f"{path}: corrupt header: {exc}") from None
    expected = geometry.header_words()
    wrong = [f.name for f, v in expected.items() if int(header[f]) != v]
    if wrong:
        raise SegmentError(f"{path}: header fields {', '.join(wrong)} disagree with its geometry")
    if size != geometry.size:
        raise SegmentError(f"{path}: file is {size} bytes, header says {geometry.size}")
    return geometry
