"""Capture files (`.fhcap`): every frame a venue process receives or sends, with its receive time.

Layout (little-endian):

    file header   b"FHCAP01\\n", u32 n, n bytes of JSON (format, venue, host, start, config, clock),
                  u32 CRC32 of that JSON
    block*        u32 b"FHBK", u8 codec (0 none, 1 zstd), 3 reserved, u32 frames, u32 stored bytes,
                  u32 raw bytes, u32 CRC32 of the stored bytes, i64 first ts_ns, i64 last ts_ns,
                  then the stored bytes: the frames, zstd-compressed when codec is 1
    frame         u8 kind, u8 reserved, u16 connection id, u32 payload bytes, i64 ts_recv ns, payload

A block is written with one `write` call once it is full or flushed, so a process killed at any
moment leaves whole blocks and at most one torn tail, which a reader reports and skips. REST
frames carry `METHOD URL STATUS\\n` before the body (status 0 when unknown).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numba import njit

FILE_MAGIC = b"FHCAP01\n"
BLOCK_MAGIC = b"FHBK"
FORMAT_VERSION = 1
_BLOCK = struct.Struct("<4sB3xIIIIqq")
_FRAME = struct.Struct("<BxHIq")
FRAME_HEADER_BYTES = _FRAME.size
CODEC_NONE = 0
CODEC_ZSTD = 1
MAX_PAYLOAD = 1 << 30


class FrameKind(IntEnum):
    WS_RECV = 1
    WS_SENT = 2
    REST = 3
    CONNECT = 4
    DISCONNECT = 5
    MARKER = 6


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.bytes_written = 0
        self._write(FILE_MAGIC + struct.pack("<I", len(encoded)) + encoded + struct.pack("<I", zlib.crc32(encoded)))

    def append(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"frame of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        if not self._pending:
            self._first_ts = ts_ns
        self._last_ts = ts_ns
        self._pending.append(_FRAME.pack(kind, conn, len(payload), ts_ns))
        self._pending.append(payload)
        self._pending_bytes += _FRAME.size + len(payload)
        self.frames_written += 1
        if self._pending_bytes >= self._block_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the pending frames as one block (one write call)."""
        if not self._pending:
            return
        raw = b"".join(self._pending)
        stored = self._compress(raw) if self._compress else raw
        codec = CODEC_ZSTD if self._compress else CODEC_NONE
        n_frames = len(self._pending) // 2
        head = _BLOCK.pack(BLOCK_MAGIC, codec, n_frames, len(stored), len(raw), zlib.crc32(stored),
                           self._first_ts, self._last_ts)
        self._write(head + stored)
        self._pending.clear()
        self._pending_bytes = 0

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.bytes_written += len(data)

    def close(self) -> None:
        if self._fd < 0:
            return
        self.flush()
        os.fsync(self._fd)
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


@dataclass
class CaptureReader:
    """Reads a capture: the header, an index of its blocks, and the frames in order.

    A torn or corrupt tail (a block cut short by a crash, or one whose checksum fails) ends the
    readable part: it is recorded in `problems`, never raised."""

    path: str
    header: dict[str, Any] = field(init=False)
    blocks: list[BlockInfo] = field(init=False)
    problems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)
        self.problems = []
        with open(self.path, "rb") as f:
            data_start = self._read_header(f)
            self.blocks = self._index(f, data_start)

    def _read_header(self, f) -> int:
        magic = f.read(len(FILE_MAGIC))
        if magic != FILE_MAGIC:
            raise CaptureError(f"{self.path}: not an fh capture file")
        (length,) = struct.unpack("<I", f.read(4))
        encoded = f.read(length)
        crc = f.read(4)
        if len(encoded) != length or len(crc) != 4 or struct.unpack("<I", crc)[0] != zlib.crc32(encoded):
            raise CaptureError(f"{self.path}: capture header is damaged")
        self.header = json.loads(encoded)
        return f.tell()

    def _index(self, f, offset: int) -> list[BlockInfo]:
        size = os.fstat(f.fileno()).st_size
        blocks = []
        while offset < size:
            f.seek(offset)
            head = f.read(_BLOCK.size)
            if len(head) < _BLOCK.size:
                self.problems.append(f"torn tail: {size - offset} bytes after the last whole block at {offset}")
                break
            magic, codec, frames, stored, raw, crc, first_ts, last_ts = _BLOCK.unpack(head)
            if magic != BLOCK_MAGIC or codec not in (CODEC_NONE, CODEC_ZSTD):
                self.problems.append(f"bad block header at offset {offset}: {size - offset} bytes skipped")
                break
            if offset + _BLOCK.size + stored > size:
                self.problems.append(f"torn tail: block at {offset} needs {stored} bytes, "
                                     f"{size - offset - _BLOCK.size} present")
                break
            blocks.append(BlockInfo(offset, codec, frames, stored, raw, crc, first_ts, last_ts))
            offset += _BLOCK.size + stored
        return blocks

    def block_payload(self, block: BlockInfo, f=None) -> bytes | None:
        """The raw frame bytes of a block, or None (recorded in `problems`) when it fails its check."""
        own = f is None
        f = f or open(self.path, "rb")
        try:
            f.seek(block.offset + _BLOCK.size)
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

        return zstandard.ZstdDecompressor().decompress(stored, max_output_size=block.raw)

    def batches(self, start_ns: int | None = None) -> Iterator[FrameBatch]:
        """Each block's frames as arrays (no Python object per frame), from the first block that can
        hold `start_ns` on. A block that fails its checksum is skipped and recorded in `problems`
        (blocks are independent; the decoders see the hole as a sequence gap)."""
        with open(self.path, "rb") as f:
            for block in self.blocks:
                if start_ns is not None and block.last_ts < start_ns:
                    continue
                payload = self.block_payload(block, f)
                if payload is not None:
                    yield FrameBatch.of(payload, block.frames)

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
        with open(self.path, "rb") as f:
            for block in self.blocks:
                payload = self.block_payload(block, f)
                if payload is None:
                    bad_blocks += 1
                    continue
                for frame in FrameBatch.of(payload, block.frames).all():
                    frames += 1
                    kinds[FrameKind(frame.kind).name.lower()] += 1
                    first = frame.ts_ns if first is None else min(first, frame.ts_ns)
                    last = frame.ts_ns if last is None else max(last, frame.ts_ns)
        return {"path": self.path, "header": self.header, "blocks": len(self.blocks), "bad_blocks": bad_blocks,
                "frames": frames, "by_kind": kinds, "first_ns": first, "last_ns": last,
                "problems": list(dict.fromkeys(self.problems))}


@dataclass(frozen=True)
class FrameBatch:
    """The frames of one block as arrays: frame k is kinds[k], conns[k], ts[k] and the payload
    data[starts[k]:stops[k]]. Replay runs whole batches through numba."""

    data: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    kinds: np.ndarray
    conns: np.ndarray
    ts: np.ndarray

    @classmethod
    def of(cls, payload: bytes, frames: int) -> FrameBatch:
        """Index a block's raw frame bytes (`frames`: the count its header gives, an upper bound)."""
        data = np.frombuffer(payload, np.uint8)
        starts, stops, kinds, conns, ts = (np.zeros(frames, np.int64) for _ in range(5))
        count = _index_frames(data, starts, stops, kinds, conns, ts)
        return cls(data, starts[:count], stops[:count], kinds[:count], conns[:count], ts[:count])

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

    def payload(self, k: int) -> bytes:
        return self.data[self.starts[k]:self.stops[k]].tobytes()

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
    `max_seconds` (whichever comes first), so a long-running venue process never grows one file."""

    def __init__(self, directory: str | os.PathLike, venue: str, max_bytes: int = 1 << 30,
                 max_seconds: float = 3600.0, **writer_options: Any):
        self.directory = os.fspath(directory)
        self.venue = venue
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._options = writer_options
        self.paths: list[str] = []
        self._writer: CaptureWriter | None = None
        self._opened_at = 0.0
        os.makedirs(self.directory, exist_ok=True)

    def append(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        writer = self._writer
        if writer is None or writer.bytes_written >= self.max_bytes or \
                time.monotonic() - self._opened_at >= self.max_seconds:
            writer = self._rotate()
        writer.append(kind, conn, ts_ns, payload)

    def _rotate(self) -> CaptureWriter:
        if self._writer is not None:
            self._writer.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(self.directory, f"{self.venue}-{stamp}-{len(self.paths):04d}.fhcap")
        self._writer = CaptureWriter(path, self.venue, **self._options)
        self._opened_at = time.monotonic()
        self.paths.append(path)
        return self._writer

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RotatingCaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
