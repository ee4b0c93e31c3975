"""Capture files (`.fhcap`): every frame a venue process receives or sends, with its receive time.

Layout (little-endian), format 2:

    file header   b"FHCAP02\\n", u32 n, n bytes of JSON (format, venue, host, start, config, clock),
                  u32 CRC32 of that JSON
    block*        u32 b"FHBK", u8 codec (0 none, 1 zstd), 3 reserved, u32 frames, u32 stored bytes,
                  u32 raw bytes, u32 CRC32 of the stored bytes, i64 first ts_ns, i64 last ts_ns,
                  u32 CRC32 of the 40 header bytes before it,
                  then the stored bytes: the frames, zstd-compressed when codec is 1
    frame         u8 kind, u8 reserved, u16 connection id, u32 payload bytes, i64 ts_recv ns, payload

Format 1 (b"FHCAP01\\n") is the same without the block header's CRC; readers still read it. A
reader trusts no length before checking it: a block header must pass its CRC (format 2) and its
sizes must be within the bounds a writer can produce (`MAX_BLOCK_RAW`, at least a frame header a
frame, a zstd frame that declares the raw size), so a flipped bit never makes it allocate or read
more than the file holds. Frames of a kind this version does not know are skipped and counted.

A block is written with one `write` call once it is full, flushed by the owner's timer, or closed,
so a process killed at any moment leaves whole blocks and at most one torn tail, which a reader
reports and skips. Files are created exclusively (never truncating or following a link), mode 0600.
REST frames carry `METHOD URL STATUS\\n` before the body (status 0 when unknown).
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
import zlib
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numba import njit

FILE_MAGIC = b"FHCAP02\n"
FILE_MAGIC_V1 = b"FHCAP01\n"
BLOCK_MAGIC = b"FHBK"
FORMAT_VERSION = 2
_BLOCK_FIELDS = struct.Struct("<4sB3xIIIIqq")
_BLOCK_CRC = struct.Struct("<I")
_FRAME = struct.Struct("<BxHIq")
FRAME_HEADER_BYTES = _FRAME.size
CODEC_NONE = 0
CODEC_ZSTD = 1
MAX_PAYLOAD = 256 << 20  # the largest message a worker accepts (workers.wsclient.MAX_FRAME)
MAX_BLOCK_RAW = MAX_PAYLOAD + FRAME_HEADER_BYTES  # a writer starts a new block before going past it
MAX_BLOCK_STORED = MAX_BLOCK_RAW + (MAX_BLOCK_RAW >> 7) + (1 << 16)  # zstd's bound on incompressible data
MAX_HEADER_JSON = 16 << 20


class FrameKind(IntEnum):
    WS_RECV = 1
    WS_SENT = 2
    REST = 3
    CONNECT = 4
    DISCONNECT = 5
    MARKER = 6


KNOWN_KINDS = np.array([int(kind) for kind in FrameKind], np.int64)


@dataclass(frozen=True)
class Frame:
    kind: FrameKind
    conn: int
    ts_ns: int
    payload: bytes


class CaptureError(Exception):
    """A file that is not a capture, or a header that does not verify."""


def rest_payload(method: str, url: str, status: int, body: bytes) -> bytes:
    return f"{method} {url} {status}\n".encode() + body


def split_rest(payload: bytes) -> tuple[str, str, int, bytes]:
    """(method, url, status, body) of a REST frame."""
    head, _, body = payload.partition(b"\n")
    method, url, status = head.decode().split(" ")
    return method, url, int(status), body


def _compressor():
    import zstandard

    return zstandard.ZstdCompressor(level=3)


class CaptureWriter:
    """Appends frames to one capture file, in blocks of about `block_bytes` raw bytes."""

    def __init__(self, path: str | os.PathLike, venue: str, config: dict[str, Any] | None = None,
                 compress: bool = True, block_bytes: int = 256 * 1024, extra: dict[str, Any] | None = None):
        self.path = os.fspath(path)
        self._compress = _compressor().compress if compress else None
        self._block_bytes = block_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._first_ts = 0
        self._last_ts = 0
        self.frames_written = 0
        header = {
            "format": FORMAT_VERSION, "venue": venue, "host": socket.gethostname(), "start_ns": time.time_ns(),
            "clock": {"realtime_ns": time.time_ns(), "monotonic_ns": time.monotonic_ns(),
                      "clocksource": _clocksource()},
            "compression": "zstd" if compress else "none", "config": config or {}, **(extra or {}),
        }
        encoded = json.dumps(header, sort_keys=True).encode()
        self.header = header
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.bytes_written = 0
        try:
            self._write(FILE_MAGIC + struct.pack("<I", len(encoded)) + encoded + struct.pack("<I", zlib.crc32(encoded)))
        except OSError:  # a file without its header is no capture: it goes
            self.abandon()
            os.unlink(self.path)
            raise

    def append(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"frame of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        if self._pending_bytes + _FRAME.size + len(payload) > MAX_BLOCK_RAW:
            self.flush()
        if not self._pending:
            self._first_ts = ts_ns
        self._last_ts = ts_ns
        self._pending.append(_FRAME.pack(kind, conn, len(payload), ts_ns))
        self._pending.append(payload)
        self._pending_bytes += _FRAME.size + len(payload)
        self.frames_written += 1
        if self._pending_bytes >= self._block_bytes:
            self.flush()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write the pending frames as one block (one write call). When the write fails (OSError)
        the block is lost, never written twice: the file ends in a torn tail readers skip."""
        if not self._pending:
            return
        raw = b"".join(self._pending)
        stored = self._compress(raw) if self._compress else raw
        codec = CODEC_ZSTD if self._compress else CODEC_NONE
        fields = _BLOCK_FIELDS.pack(BLOCK_MAGIC, codec, len(self._pending) // 2, len(stored), len(raw),
                                    zlib.crc32(stored), self._first_ts, self._last_ts)
        self._pending.clear()
        self._pending_bytes = 0
        self._write(fields + _BLOCK_CRC.pack(zlib.crc32(fields)) + stored)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.bytes_written += len(data)

    def close(self) -> None:
        """Flush, fsync and close; the descriptor is closed even when those fail (and raise)."""
        if self._fd < 0:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        """Close without writing what is pending (after a failed write)."""
        self._pending.clear()
        self._pending_bytes = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clocksource() -> str:
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class BlockInfo:
    offset: int
    codec: int
    frames: int
    stored: int
    raw: int
    crc: int
    first_ts: int
    last_ts: int
    header_bytes: int  # the block header's size in this file's format


def _block_bounds_problem(codec: int, frames: int, stored: int, raw: int) -> str:
    """Why a block header's sizes cannot be a writer's ("" when they can)."""
    if codec not in (CODEC_NONE, CODEC_ZSTD):
        return f"unknown codec {codec}"
    if not 0 < raw <= MAX_BLOCK_RAW or stored > MAX_BLOCK_STORED:
        return f"sizes out of bounds (stored {stored}, raw {raw})"
    if codec == CODEC_NONE and stored != raw:
        return f"uncompressed block with stored {stored} != raw {raw}"
    if not 0 < frames <= raw // FRAME_HEADER_BYTES:
        return f"{frames} frames cannot fit in {raw} bytes"
    return ""


@dataclass
class CaptureReader:
    """Reads a capture: the header, an index of its blocks, and the frames in order.

    A torn or corrupt tail (a block cut short by a crash, or a block header that fails its checks)
    ends the readable part, a block whose checksum fails is skipped, frames of an unknown kind are
    skipped and counted (`unknown_frames`): each is recorded in `problems`, never raised."""

    path: str
    header: dict[str, Any] = field(init=False)
    blocks: list[BlockInfo] = field(init=False)
    problems: list[str] = field(init=False)
    unknown_frames: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)
        self.problems = []
        with open(self.path, "rb") as f:
            data_start = self._read_header(f)
            self.blocks = self._index(f, data_start)

    def _read_header(self, f) -> int:
        magic = f.read(len(FILE_MAGIC))
        if magic not in (FILE_MAGIC, FILE_MAGIC_V1):
            raise CaptureError(f"{self.path}: not an fh capture file")
        self._block_crc = magic == FILE_MAGIC
        length_bytes = f.read(4)
        length = struct.unpack("<I", length_bytes)[0] if len(length_bytes) == 4 else -1
        if not 0 <= length <= MAX_HEADER_JSON:
            raise CaptureError(f"{self.path}: capture header is damaged")
        encoded = f.read(length)
        crc = f.read(4)
        if len(encoded) != length or len(crc) != 4 or struct.unpack("<I", crc)[0] != zlib.crc32(encoded):
            raise CaptureError(f"{self.path}: capture header is damaged")
        self.header = json.loads(encoded)
        return f.tell()

    def _index(self, f, offset: int) -> list[BlockInfo]:
        size = os.fstat(f.fileno()).st_size
        header_bytes = _BLOCK_FIELDS.size + (_BLOCK_CRC.size if self._block_crc else 0)
        blocks = []
        while offset < size:
            f.seek(offset)
            head = f.read(header_bytes)
            if len(head) < header_bytes:
                self.problems.append(f"torn tail: {size - offset} bytes after the last whole block at {offset}")
                break
            magic, codec, frames, stored, raw, crc, first_ts, last_ts = _BLOCK_FIELDS.unpack_from(head)
            fields = head[:_BLOCK_FIELDS.size]
            why = "bad magic" if magic != BLOCK_MAGIC else \
                "header checksum fails" if self._block_crc and \
                _BLOCK_CRC.unpack_from(head, _BLOCK_FIELDS.size)[0] != zlib.crc32(fields) else \
                _block_bounds_problem(codec, frames, stored, raw)
            if why:
                self.problems.append(f"bad block header at offset {offset} ({why}): {size - offset} bytes skipped")
                break
            if offset + header_bytes + stored > size:
                self.problems.append(f"torn tail: block at {offset} needs {stored} bytes, "
                                     f"{size - offset - header_bytes} present")
                break
            blocks.append(BlockInfo(offset, codec, frames, stored, raw, crc, first_ts, last_ts, header_bytes))
            offset += header_bytes + stored
        return blocks

    def block_payload(self, block: BlockInfo, f=None) -> bytes | None:
        """The raw frame bytes of a block, or None (recorded in `problems`) when it fails its check."""
        own = f is None
        f = f or open(self.path, "rb")
        try:
            f.seek(block.offset + block.header_bytes)
            stored = f.read(block.stored)
        finally:
            if own:
                f.close()
        if zlib.crc32(stored) != block.crc:
            self.problems.append(f"block at offset {block.offset} fails its checksum")
            return None
        if block.codec == CODEC_NONE:
            return stored
        import zstandard

        try:
            if zstandard.frame_content_size(stored) != block.raw:  # what decompression would allocate
                raise zstandard.ZstdError(f"its zstd frame does not declare the {block.raw} raw bytes")
            return zstandard.ZstdDecompressor().decompress(stored, max_output_size=block.raw)
        except zstandard.ZstdError as exc:
            self.problems.append(f"block at offset {block.offset} does not decompress: {exc}")
            return None

    def _batch(self, block: BlockInfo, f) -> FrameBatch | None:
        """A block's frames of known kinds (the others counted in `unknown_frames` and `problems`)."""
        payload = self.block_payload(block, f)
        if payload is None:
            return None
        batch = FrameBatch.of(payload, block.frames)
        known = np.isin(batch.kinds, KNOWN_KINDS)
        if known.all():
            return batch
        unknown = batch.kinds[~known]
        self.unknown_frames += len(unknown)
        self.problems.append(f"{len(unknown)} frame(s) of unknown kind {', '.join(map(str, np.unique(unknown)))} "
                             f"skipped in the block at offset {block.offset}")
        return batch.select(known)

    def batches(self, start_ns: int | None = None) -> Iterator[FrameBatch]:
        """Each block's frames as arrays (no Python object per frame), from the first block that can
        hold `start_ns` on. A block that fails its checksum is skipped and recorded in `problems`
        (blocks are independent; the decoders see the hole as a sequence gap)."""
        with open(self.path, "rb") as f:
            for block in self.blocks:
                if start_ns is not None and block.last_ts < start_ns:
                    continue
                batch = self._batch(block, f)
                if batch is not None:
                    yield batch

    def frames(self, start_ns: int | None = None) -> Iterator[Frame]:
        """Frames in file order, from `start_ns` on (see `batches`)."""
        for batch in self.batches(start_ns):
            for k in range(len(batch)):
                if start_ns is None or batch.ts[k] >= start_ns:
                    yield batch.frame(k)

    def verify(self) -> dict[str, Any]:
        """Check every block; counts by kind, time range and problems."""
        kinds = {kind.name.lower(): 0 for kind in FrameKind}
        frames = bad_blocks = 0
        first = last = None
        self.unknown_frames = 0
        with open(self.path, "rb") as f:
            for block in self.blocks:
                batch = self._batch(block, f)
                if batch is None:
                    bad_blocks += 1
                    continue
                for frame in batch.all():
                    frames += 1
                    kinds[frame.kind.name.lower()] += 1
                    first = frame.ts_ns if first is None else min(first, frame.ts_ns)
                    last = frame.ts_ns if last is None else max(last, frame.ts_ns)
        return {"path": self.path, "header": self.header, "blocks": len(self.blocks), "bad_blocks": bad_blocks,
                "frames": frames, "by_kind": kinds, "unknown_frames": self.unknown_frames,
                "first_ns": first, "last_ns": last, "problems": list(dict.fromkeys(self.problems))}


# a FrameBatch's arrays as numba takes them (venues.dispatch.run_frames)
Frames = namedtuple("Frames", "data starts stops kinds ts conns")


@dataclass(frozen=True)
class FrameBatch:
    """The frames of one block as arrays: frame k is kinds[k], conns[k], ts[k] and the payload
    data[starts[k]:stops[k]]. Replay runs whole batches through numba. `data` stays the block's
    bytes: a frame sliced from it in numba has the type of a frame a live worker passes (bytes),
    so that the venue steps compile once for both."""

    data: bytes
    starts: np.ndarray
    stops: np.ndarray
    kinds: np.ndarray
    conns: np.ndarray
    ts: np.ndarray

    def arrays(self) -> Frames:
        return Frames(self.data, self.starts, self.stops, self.kinds, self.ts, self.conns)

    @classmethod
    def of(cls, payload: bytes, frames: int) -> FrameBatch:
        """Index a block's raw frame bytes (`frames`: the count its header gives, an upper bound)."""
        starts, stops, kinds, conns, ts = (np.zeros(frames, np.int64) for _ in range(5))
        count = _index_frames(payload, starts, stops, kinds, conns, ts)
        return cls(payload, starts[:count], stops[:count], kinds[:count], conns[:count], ts[:count])

    @classmethod
    def of_frames(cls, frames: list[tuple[FrameKind, int, int, bytes]]) -> FrameBatch:
        """A batch of (kind, conn, ts_ns, payload) frames, laid out as a block holds them."""
        block = b"".join(_FRAME.pack(kind, conn, len(payload), ts_ns) + payload
                         for kind, conn, ts_ns, payload in frames)
        return cls.of(block, len(frames))

    def __len__(self) -> int:
        return len(self.starts)

    def slice(self, first: int, end: int) -> FrameBatch:
        return FrameBatch(self.data, self.starts[first:end], self.stops[first:end], self.kinds[first:end],
                          self.conns[first:end], self.ts[first:end])

    def select(self, mask: np.ndarray) -> FrameBatch:
        """The frames where `mask` is true."""
        return FrameBatch(self.data, self.starts[mask], self.stops[mask], self.kinds[mask], self.conns[mask],
                          self.ts[mask])

    def payload(self, k: int) -> bytes:
        return self.data[self.starts[k]:self.stops[k]]

    def frame(self, k: int) -> Frame:
        return Frame(FrameKind(int(self.kinds[k])), int(self.conns[k]), int(self.ts[k]), self.payload(k))

    def all(self) -> Iterator[Frame]:
        return (self.frame(k) for k in range(len(self)))


@njit(nogil=True, cache=True)
def _index_frames(data, starts, stops, kinds, conns, ts):
    """Walk the frame headers (u8 kind, u8, u16 conn, u32 length, i64 ts_ns; little-endian) of a
    block; returns the frames indexed (a frame cut short ends the walk)."""
    offset = 0
    count = 0
    while count < len(starts) and offset + FRAME_HEADER_BYTES <= len(data):
        length = 0
        for k in range(4):
            length |= np.int64(data[offset + 4 + k]) << (8 * k)
        stamp = np.uint64(0)
        for k in range(8):
            stamp |= np.uint64(data[offset + 8 + k]) << np.uint64(8 * k)
        if offset + FRAME_HEADER_BYTES + length > len(data):
            break
        kinds[count] = data[offset]
        conns[count] = np.int64(data[offset + 2]) | (np.int64(data[offset + 3]) << 8)
        ts[count] = np.int64(stamp)
        starts[count] = offset + FRAME_HEADER_BYTES
        stops[count] = offset + FRAME_HEADER_BYTES + length
        offset = stops[count]
        count += 1
    return count


class RotatingCaptureWriter:
    """Capture files `<directory>/<venue>-<UTC start>-<n>.fhcap`, a new one after `max_bytes` or
    `max_seconds` (whichever comes first), so a long-running venue process never grows one file.

    Each file is created exclusively: a name taken (a restart within the same second, a clock that
    stepped back) takes the next `n`, an earlier file is never truncated. Retention (`prune`, also
    run at each new file): the venue's oldest files (by modification time) in the directory are
    deleted while their total exceeds `max_total_bytes` or they are older than `max_age_s` (0: no
    limit); the file being written is never deleted. A write that fails raises OSError and leaves no
    file open: the next `append` (or `reopen`) starts a new file."""

    MAX_NAME_TRIES = 10_000

    def __init__(self, directory: str | os.PathLike, venue: str, max_bytes: int = 1 << 30,
                 max_seconds: float = 3600.0, max_total_bytes: int = 0, max_age_s: float = 0.0,
                 **writer_options: Any):
        self.directory = os.fspath(directory)
        self.venue = venue
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_total_bytes = max_total_bytes
        self.max_age_s = max_age_s
        self._options = writer_options
        self._name = re.compile(re.escape(venue) + r"-\d{8}T\d{6}Z-\d+\.fhcap")
        self.paths: list[str] = []
        self._writer: CaptureWriter | None = None
        self._opened_at = 0.0
        self._sequence = 0
        os.makedirs(self.directory, exist_ok=True)

    @property
    def path(self) -> str | None:
        """The file being written (None between a failure and the next file)."""
        return self._writer.path if self._writer is not None else None

    @property
    def pending(self) -> bool:
        return self._writer is not None and self._writer.pending

    def append(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        writer = self._writer
        if writer is None or writer.bytes_written >= self.max_bytes or \
                time.monotonic() - self._opened_at >= self.max_seconds:
            writer = self.reopen()
        self._guarded(writer.append, kind, conn, ts_ns, payload)

    def reopen(self) -> CaptureWriter:
        """Close the current file (if any) and start the next one; then apply the retention."""
        if self._writer is not None:
            self._guarded(self._writer.close)
            self._writer = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for _ in range(self.MAX_NAME_TRIES):
            path = os.path.join(self.directory, f"{self.venue}-{stamp}-{self._sequence:04d}.fhcap")
            self._sequence += 1
            try:
                self._writer = CaptureWriter(path, self.venue, **self._options)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"{self.directory}: {self.MAX_NAME_TRIES} capture names taken for {stamp}")
        self._opened_at = time.monotonic()
        self.paths.append(path)
        self.prune()
        return self._writer

    def _guarded(self, call, *args) -> None:
        """Run a write of the current file; on OSError drop the file (its tail is torn) and raise."""
        try:
            call(*args)
        except OSError:
            if self._writer is not None:
                self._writer.abandon()
                self._writer = None
            raise

    def prune(self, now: float | None = None) -> list[str]:
        """Apply the retention limits; returns the files deleted, oldest first."""
        if not (self.max_total_bytes or self.max_age_s):
            return []
        now = time.time() if now is None else now
        files = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if self._name.fullmatch(entry.name) and entry.path != self.path:
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    files.append((stat.st_mtime, entry.name, entry.path, stat.st_size))
        files.sort()
        total = sum(size for *_, size in files) + (self._writer.bytes_written if self._writer else 0)
        deleted = []
        for mtime, _, path, size in files:
            too_old = self.max_age_s and now - mtime > self.max_age_s
            if not too_old and not (self.max_total_bytes and total > self.max_total_bytes):
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:  # not ours to delete (another owner, a read-only file system): left alone
                continue
            total -= size
            deleted.append(path)
        return deleted

    def flush(self) -> None:
        if self._writer is not None:
            self._guarded(self._writer.flush)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> RotatingCaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
