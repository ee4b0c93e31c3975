"""`fh replay`: captured frames through the live decode and book path into shared memory.

Deterministic: the same capture gives the same books, bit for bit. The summary JSON is a contract:
{"books": {"<venue>:<venue symbol>": {"symbol", "valid", "bids", "asks", "update_id", "gaps",
"resyncs", "checksum_ok", "checksum_fail", "crossed"}}, "frames", "decode_errors", "elapsed_s",
"msgs_per_s"}, levels as exact decimal strings, best first.
"""
from __future__ import annotations

import json
import time
from functools import partial
from urllib.parse import urlparse

import numpy as np

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from feedhandler.instrument_cache import InstrumentCacheError, parse_metadata
from feedhandler.instruments import Instrument
from feedhandler.feed import VenueFeed
from feedhandler.venues import VENUES
from feedhandler.venues.base import Venue
from shm.layout import Counter
from shm.files import replace_file
from shm.reader import VenueReader
from shm.segment import SegmentWriter

from .warmup import load_kernels, reader_api, replay_loop


_RECEIVED = (int(FrameKind.WS_RECV), int(FrameKind.REST))


class ReplayError(ValueError):
    """A capture this replay cannot use, with the reason."""


def capture_feed(reader: CaptureReader) -> tuple[type[VenueFeed], list[Instrument]]:
    """The feed class of a capture's venue and the instruments its connections carried."""
    venue = reader.header["venue"]
    if venue not in VENUES:
        raise ReplayError(f"{reader.path}: {venue} captures cannot be replayed (supported: {', '.join(VENUES)})")
    return VENUES[venue].feed, _captured_instruments(reader, VENUES[venue])


def _captured_instruments(reader: CaptureReader, venue: Venue) -> list[Instrument]:
    """Instruments from the captured metadata response, named as the captured connections' URL names
    them, limited to what the connections asked for (their URLs and the messages they sent)."""
    metadata: list[bytes] = []  # every response: a venue may list each instrument type in its own
    endpoint = "/" + urlparse(venue.instruments_path).path.rsplit("/", 1)[-1]  # older APIs share the last segment
    urls: list[str] = []
    sent: list[bytes] = []
    for frame in reader.frames():
        if frame.kind == FrameKind.REST:
            _, url, _, body = split_rest(frame.payload)
            if urlparse(url).path.endswith(endpoint):
                metadata.append(body)
        elif frame.kind == FrameKind.CONNECT:
            urls.append(frame.payload.decode(errors="replace"))
        elif frame.kind == FrameKind.WS_SENT:
            sent.append(frame.payload)
    if not metadata:
        raise ReplayError(f"{reader.path}: no {endpoint} response captured; instruments unknown")
    named: list[Instrument] = []
    for body in metadata:  # a response that lists none of ours (another instrument type) spoils not the others
        try:
            named += parse_metadata(venue.name, body)
        except InstrumentCacheError as exc:
            error = exc
    if not named:
        raise ReplayError(f"{reader.path}: {error}") from error
    by_wire: dict[str, Instrument] = {}  # one instrument per wire name: an alias (-USDC) yields to its own product
    for original, instrument in zip(named, venue.protocol.wire_instruments(named, urls[0] if urls else "")):
        if instrument.venue_symbol not in by_wire or original.venue_symbol == instrument.venue_symbol:
            by_wire[instrument.venue_symbol] = instrument
    wanted = venue.protocol.subscribed_symbols(urls, sent)
    return sorted((i for i in by_wire.values() if not wanted or i.venue_symbol in wanted), key=lambda i: i.venue_symbol)


def _speed_factor(speed: str) -> float | None:
    """None for as fast as possible, else how many times faster than recorded."""
    if speed == "max":
        return None
    if speed == "realtime":
        return 1.0
    try:
        factor = float(speed)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise ReplayError(f"--speed must be max, realtime or a positive factor, not {speed!r}")
    return factor


def _kernels(venue: str, prefix: str) -> None:
    """What a replay of `venue` calls: the batch loop and the venue's Python paths, then the reader
    the summary is read with."""
    replay_loop(prefix, venue)
    reader_api(prefix)


def replay(paths: list[str], shm_prefix: str = "fhreplay", depth: int = 10, speed: str = "max",
           summary_json: str | None = None, keep: bool = False) -> dict:
    """Feed captured frames through the venue's decode and book path into `<shm_prefix>.<venue>`; with
    `keep` the segment stays (CLOSED) afterwards for readers and sinks, else it is removed."""
    readers = [CaptureReader(path) for path in paths]
    venues = {reader.header["venue"] for reader in readers}
    if len(venues) != 1:
        raise ReplayError(f"replay one venue at a time; these captures hold {sorted(venues)}")
    venue = venues.pop()
    factor = _speed_factor(speed)
    feed_class, instruments = capture_feed(readers[0])
    load_kernels("fh replay", partial(_kernels, venue))  # the rate measured is the decoders', not the compiler's
    writer = SegmentWriter.create(shm_prefix, venue, [i.spec(feed_class.CAPACITY) for i in instruments],
                                  depth=depth, ring_slots=1 << 16)
    feed = feed_class(instruments, writer)
    frames = 0
    started = time.perf_counter()
    first_ts = None
    try:
        for reader in readers:
            for batch in reader.batches():
                frames += int(np.isin(batch.kinds, _RECEIVED).sum())
                if factor is None:
                    feed.on_batch(batch)
                    continue
                for k in range(len(batch)):  # paced: one frame at a time, each at its recorded offset
                    first_ts = int(batch.ts[k]) if first_ts is None else first_ts
                    due = started + (int(batch.ts[k]) - first_ts) / 1e9 / factor
                    time.sleep(max(0.0, due - time.perf_counter()))
                    feed.on_batch(batch.slice(k, k + 1))
            writer.heartbeat()
        elapsed = time.perf_counter() - started
        summary = _summary(venue, shm_prefix, writer, depth, frames, elapsed)
    finally:
        writer.close(unlink=not keep)
    if summary_json:
        replace_file(summary_json, json.dumps(summary, indent=1).encode())
    return summary


def _summary(venue: str, prefix: str, writer: SegmentWriter, depth: int, frames: int, elapsed: float) -> dict:
    books = {}
    with VenueReader(venue, prefix=prefix) as reader:
        for instrument in reader.instruments:
            book = reader.book(instrument.index, depth=depth)
            counters = reader.counters(instrument.index)
            books[f"{venue}:{instrument.venue_symbol}"] = {
                "symbol": instrument.symbol, "valid": book.valid,
                "bids": book.levels_text("bids"), "asks": book.levels_text("asks"),
                "update_id": book.update_id if book.valid else None,
                "gaps": counters["gaps"], "resyncs": counters["resyncs"],
                "checksum_ok": counters["checksum_ok"], "checksum_fail": counters["checksum_fail"],
                "crossed": counters["crossed"],
            }
    decode_errors = int(writer.counters[:, Counter.DECODE_ERRORS].sum())
    return {"books": books, "frames": frames, "decode_errors": decode_errors, "elapsed_s": elapsed,
            "msgs_per_s": frames / elapsed if elapsed > 0 else 0.0}
