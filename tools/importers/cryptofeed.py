"""cryptofeed recordings -> one fh capture, all connections merged in receive-time order.

Two forms are read (see ../shared/captures/README.md):
- text: a prefix `DIR/EXCH` with `EXCH.0` (instrument list, configuration), `EXCH.http.*` (REST
  responses) and `EXCH.ws.N.*` (one WebSocket connection each);
- v2: `*.jsonl.zst`, a header line then connect/send/recv/http records.
Receive times are parsed from their decimal text, never through a float.
"""
from __future__ import annotations

import base64
import heapq
import io
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path

from feedhandler.capture import CaptureWriter, FrameKind, rest_payload
from feedhandler.venues import UnknownVenue, by_cryptofeed

# (ts_ns, kind, connection name, payload)
Record = tuple[int, FrameKind, str, bytes]

_REST_LINE = re.compile(r"^(?P<url>\S+) -> (?P<ts>[0-9.]+): (?P<body>.*)$", re.S)
_CONNECT_LINE = re.compile(r"^(?P<url>\S+) <-> (?P<ts>[0-9.]+)$")
_SENT_LINE = re.compile(r"^(?P<url>\S+) <- (?P<ts>[0-9.]+): (?P<body>.*)$", re.S)
_RECV_LINE = re.compile(r"^(?P<ts>[0-9]+\.?[0-9]*): (?P<body>.*)$", re.S)


class RecordingError(ValueError):
    """A recording this importer cannot read, with the file and line."""


def seconds_to_ns(text: str | Decimal) -> int:
    """Exact ns from decimal seconds text (digits past the 9th decimal are dropped)."""
    value = Decimal(text) if isinstance(text, str) else text
    return int(value.scaleb(9).to_integral_value(rounding="ROUND_FLOOR"))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line:
                yield number, line


def _text_instruments(path: Path, exchange: str) -> tuple[list[Record], dict]:
    records, config = [], {}
    for number, line in _lines(path):
        if line.startswith("configuration: "):
            config = json.loads(line[len("configuration: "):])
            continue
        match = _REST_LINE.match(line)
        if not match:
            raise RecordingError(f"{path}:{number}: not a REST line")
        records.append((seconds_to_ns(match["ts"]), FrameKind.REST, f"{exchange}.http.0",
                        rest_payload("GET", match["url"], 0, match["body"].encode())))
    return records, config


def _text_http(path: Path, name: str) -> Iterator[Record]:
    for number, line in _lines(path):
        match = _REST_LINE.match(line)
        if not match:
            raise RecordingError(f"{path}:{number}: not a REST line")
        yield seconds_to_ns(match["ts"]), FrameKind.REST, name, rest_payload("GET", match["url"], 0,
                                                                              match["body"].encode())


def _text_ws(path: Path, name: str) -> Iterator[Record]:
    for number, line in _lines(path):
        if match := _CONNECT_LINE.match(line):
            yield seconds_to_ns(match["ts"]), FrameKind.CONNECT, name, match["url"].encode()
        elif match := _SENT_LINE.match(line):
            yield seconds_to_ns(match["ts"]), FrameKind.WS_SENT, name, match["body"].encode()
        elif match := _RECV_LINE.match(line):
            yield seconds_to_ns(match["ts"]), FrameKind.WS_RECV, name, match["body"].encode()
        else:
            raise RecordingError(f"{path}:{number}: not a WebSocket line")


Source = tuple[str, dict, list[str], list[Iterable[Record]]]


def read_text(prefix: Path) -> Source:
    """(exchange, configuration, connection names, one time-ordered stream per file) of a text
    recording."""
    exchange = prefix.name
    main = prefix.parent / f"{exchange}.0"
    if not main.exists():
        raise RecordingError(f"{main} not found: give the prefix DIR/EXCH of a cryptofeed text recording")
    instruments, config = _text_instruments(main, exchange)
    names = [f"{exchange}.http.0"]
    streams: list[Iterable[Record]] = [instruments]
    for kind, reader in (("http", _text_http), ("ws", _text_ws)):
        for path in sorted(prefix.parent.glob(f"{exchange}.{kind}.*")):
            name = f"{exchange}.{kind}.{path.name.split('.')[2]}"
            names.append(name)
            streams.append(reader(path, name))
    return exchange, config, list(dict.fromkeys(names)), streams


def read_v2(path: Path) -> Source:
    """(exchange, configuration, connection names, one record stream) of a v2 `.jsonl.zst`
    recording."""
    import zstandard

    with open(path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        lines = [line for line in text if line.strip()]
    header = json.loads(lines[0])
    if header.get("t") != "header":
        raise RecordingError(f"{path}:1: expected the v2 header record")
    records = []
    for number, line in enumerate(lines[1:], 2):
        record = json.loads(line, parse_float=Decimal)
        kind = record.get("t")
        ts = seconds_to_ns(record["ts"])
        if kind == "connect":
            records.append((ts, FrameKind.CONNECT, record["conn"], record.get("addr", "").encode()))
        elif kind in ("send", "recv"):
            body = base64.b64decode(record["b64"]) if "b64" in record else record["data"].encode()
            records.append((ts, FrameKind.WS_SENT if kind == "send" else FrameKind.WS_RECV, record["conn"], body))
        elif kind == "http":
            records.append((ts, FrameKind.REST, record["conn"],
                            rest_payload("GET", record["url"], 0, record["data"].encode())))
        else:
            raise RecordingError(f"{path}:{number}: unknown record type {kind!r}")
    records.sort(key=lambda r: r[0])
    names = list(dict.fromkeys(name for _, _, name, _ in records))
    return header["exchange"], header.get("config", {}), names, [records]


def import_recordings(paths: list[str], output: str) -> dict:
    """Import every recording into one capture at `output`; returns counts."""
    sources = [read_v2(Path(p)) if p.endswith(".jsonl.zst") else read_text(Path(p)) for p in paths]
    exchanges = {exchange.upper() for exchange, *_ in sources}
    if len(exchanges) != 1:
        raise RecordingError(f"one capture holds one venue; these recordings are from {sorted(exchanges)}")
    try:
        venue = by_cryptofeed(exchanges.pop()).name
    except UnknownVenue as exc:
        raise RecordingError(str(exc)) from None
    names = [name for _, _, source_names, _ in sources for name in source_names]
    connections = {name: conn for conn, name in enumerate(dict.fromkeys(names), 1)}
    streams = [stream for *_, source_streams in sources for stream in source_streams]
    config = {exchange: cfg for exchange, cfg, *_ in sources}
    extra = {"imported_from": [str(p) for p in paths], "connections": {str(c): n for n, c in connections.items()}}
    Path(output).unlink(missing_ok=True)  # the output named is replaced; captures are created exclusively
    with CaptureWriter(output, venue, config={"cryptofeed": config}, extra=extra) as writer:
        for ts, kind, name, payload in heapq.merge(*streams, key=lambda record: record[0]):
            writer.append(kind, connections[name], ts, payload)
        frames = writer.frames_written
    return {"venue": venue, "frames": frames, "connections": len(connections), "output": output}
