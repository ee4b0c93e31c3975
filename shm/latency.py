"""Per-hop latency histograms in shared memory: one file per writing process,
`<dir>/<prefix>.latency.<process>`, holding a table of (hop, label) names and one histogram row
(shm.histogram) per name. The process updates its rows from numba; `fh latency` and `fh metrics`
map every such file read-only. A restarted process starts a new file (counts from zero). The files
are made and trusted as segments are (shm.segment): private to their writer or its $FH_SHM_GROUP,
and a reader skips one its expected writer uid did not make, naming it. The writer holds the
segments' liveness lock on its file for its whole life, so a dead writer's file can be told apart
and removed (`retire`, for `fh clean`)."""
from __future__ import annotations

import glob
import mmap
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .histogram import HIST_WORDS
from .files import remove_stale
from .segment import (
    SegmentError, create_segment_file, hold_liveness_lock, open_trusted, refuse_foreign, segment_path, writer_holds_lock,
)

MAGIC = int.from_bytes(b"FHLATNCY", "little")
VERSION = 1
HEADER_WORDS = 8
W_MAGIC, W_VERSION, W_ROWS, W_HIST_WORDS, W_PID, W_START_NS = range(6)
NAME_DTYPE = np.dtype([("hop", "S32"), ("label", "S32")])
TABLE_AT = HEADER_WORDS * 8

# The hops, in pipeline order, and what each measures.
HOPS = {
    "exchange": "venue event time -> received here (includes the clock offset between the venue and us)",
    "decode": "received -> frame decoded (event loop wait, then the decoder)",
    "publish": "decoded -> book or trade published in shared memory",
    "aggregator": "published -> seen by the aggregator",
    "nbbo": "venue record published -> the NBBO change it caused published",
    "sink": "published -> acknowledged by the sink's service",
}


NAME_PREFIX = "latency."  # segment names of latency files: latency.<process>


def latency_path(prefix: str, process: str, directory: str | None = None) -> str:
    return segment_path(prefix, NAME_PREFIX + process, directory)


def _geometry(rows: int) -> tuple[int, int]:
    hists_at = (TABLE_AT + rows * NAME_DTYPE.itemsize + 63) // 64 * 64
    return hists_at, hists_at + rows * HIST_WORDS * 8


class LatencyWriter:
    """The histograms one process writes. `rows` are (hop, label) pairs; `hists[k]` is row k."""

    def __init__(self, prefix: str, process: str, rows: Sequence[tuple[str, str]], directory: str | None = None,
                 group: str | None = None):
        for hop, label in rows:
            if hop not in HOPS or not 0 < len(label.encode()) <= 32:
                raise ValueError(f"latency row ({hop!r}, {label!r}): hop must be one of {list(HOPS)}, label 1-32 bytes")
        self.path = latency_path(prefix, process, directory)
        self.rows = list(rows)
        hists_at, size = _geometry(len(rows))
        refuse_foreign(self.path)  # replaced below: only our own (dead) predecessor's file may be there
        temporary = f"{self.path}.{os.getpid()}.new"
        remove_stale(temporary)  # a crashed predecessor's, or a planted symlink: the name, not its target
        fd = create_segment_file(temporary, group)
        try:
            hold_liveness_lock(fd)  # held while fd is open: until close() or this process's end
            os.ftruncate(fd, size)
            # populated: the first count into each page must not fault on the hot path
            self._mmap = mmap.mmap(fd, size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        except BaseException:
            os.close(fd)
            remove_stale(temporary)
            raise
        self._fd = fd
        header = np.frombuffer(self._mmap, np.int64, HEADER_WORDS, 0)
        table = np.frombuffer(self._mmap, NAME_DTYPE, len(rows), TABLE_AT)
        table["hop"] = [hop.encode() for hop, _ in rows]
        table["label"] = [label.encode() for _, label in rows]
        self.hists = np.frombuffer(self._mmap, np.int64, len(rows) * HIST_WORDS, hists_at).reshape(len(rows), HIST_WORDS)
        header[W_VERSION], header[W_ROWS], header[W_HIST_WORDS] = VERSION, len(rows), HIST_WORDS
        header[W_PID], header[W_START_NS] = os.getpid(), time.time_ns()
        header[W_MAGIC] = MAGIC
        os.rename(temporary, self.path)

    def row(self, hop: str, label: str) -> int:
        return self.rows.index((hop, label))

    def close(self, unlink: bool = False) -> None:
        self.hists = None
        try:
            self._mmap.close()
        except BufferError:  # a caller still holds a view: the mapping goes with it
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def retire(path: str) -> None:
    """Remove the latency file at `path` unless its writer is alive (SegmentError naming its pid);
    another user's file, a symlink or a file that is not a latency file is refused the same way."""
    fd = open_trusted(path, os.geteuid())
    try:
        if os.pread(fd, 8, W_MAGIC * 8) != MAGIC.to_bytes(8, "little"):
            raise SegmentError(f"{path}: not an fh latency file")
        if writer_holds_lock(fd):
            pid = int.from_bytes(os.pread(fd, 8, W_PID * 8), "little", signed=True)
            raise SegmentError(f"{path}: its writer (pid {pid}) is alive")
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:  # not a successor renamed in
            os.unlink(path)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Histogram:
    process: str
    hop: str
    label: str
    pid: int
    counts: np.ndarray  # a copy of the row, taken when read


def read_latency(prefix: str, directory: str | None = None, writer_uid: int | None = None,
                 refused: dict[str, str] | None = None) -> list[Histogram]:
    """A copy of every histogram of every process writing under `prefix`, in pipeline (hop) order.
    A file that is not a valid latency file of `writer_uid` (default: as Segment) is skipped, and
    put in `refused` (path: why) when given."""
    pattern = latency_path(prefix, "", directory)
    found = []
    for path in sorted(glob.glob(glob.escape(pattern) + "*")):
        if path.endswith(".new"):
            continue
        try:
            found.extend(_read_file(path, path[len(pattern):], writer_uid))
        except OSError:
            continue  # being replaced: the next read sees its successor
        except (SegmentError, ValueError) as exc:
            if refused is not None:
                refused[path] = str(exc)
    order = list(HOPS)
    return sorted(found, key=lambda h: (order.index(h.hop), h.label, h.process))


def _read_file(path: str, process: str, writer_uid: int | None) -> list[Histogram]:
    with open(open_trusted(path, writer_uid), "rb") as f:
        data = f.read()
    header = np.frombuffer(data, np.int64, HEADER_WORDS, 0) if len(data) >= TABLE_AT else None
    if header is None or header[W_MAGIC] != MAGIC or header[W_VERSION] != VERSION or header[W_HIST_WORDS] != HIST_WORDS:
        raise SegmentError(f"{path}: not an fh latency file of this version")
    rows = int(header[W_ROWS])
    if rows < 0:
        raise SegmentError(f"{path}: corrupt header ({rows} rows)")
    hists_at, size = _geometry(rows)
    if len(data) < size:
        raise SegmentError(f"{path}: truncated")
    table = np.frombuffer(data, NAME_DTYPE, rows, TABLE_AT)
    hists = np.frombuffer(data, np.int64, rows * HIST_WORDS, hists_at).reshape(rows, HIST_WORDS)
    try:
        names = [(name["hop"].decode(), name["label"].decode()) for name in table]
    except UnicodeDecodeError:
        raise SegmentError(f"{path}: a hop or label is not UTF-8") from None
    unknown = sorted({hop for hop, _ in names} - set(HOPS))
    if unknown:
        raise SegmentError(f"{path}: unknown hop {unknown[0]!r}")
    return [Histogram(process, hop, label, int(header[W_PID]), hists[k]) for k, (hop, label) in enumerate(names)]
