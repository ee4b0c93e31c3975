"""`fh replay`: captured frames through the live decode and book path into shared memory.

Deterministic: the same capture gives the same books, bit for bit. The summary JSON is a contract:
{"books": {"<venue>:<venue symbol>": {"symbol", "valid", "bids", "asks", "update_id", "gaps",
"resyncs", "checksum_ok", "checksum_fail", "crossed"}}, "frames", "decode_errors", "elapsed_s",
"msgs_per_s"}, levels as exact decimal strings, best first.
"""
from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs, urlparse

import numpy as np

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from feedhandler.feed import BinanceFeed, CoinbaseFeed, KrakenFeed
from feedhandler.instrument_cache import InstrumentCacheError, parse_metadata
from feedhandler.instruments import Instrument
from feedhandler.venues import kraken
from shm.layout import Counter
from shm.reader import VenueReader
from shm.segment import SegmentWriter


_RECEIVED = (int(FrameKind.WS_RECV), int(FrameKind.REST))


class ReplayError(ValueError):
    """A capture this replay cannot use, with the reason."""


def _captured_instruments(reader: CaptureReader, venue: str, endpoint: str) -> list[Instrument]:
    """Instruments from the captured metadata response, limited to what the connections asked for
    (Binance: the combined-stream URL; Kraken: the pairs of subscribe messages)."""
    metadata = None
    wanted: set[str] = set()
    kraken_v2 = False
    for frame in reader.frames():
        if frame.kind == FrameKind.REST and metadata is None:
            _, url, _, body = split_rest(frame.payload)
            if urlparse(url).path.endswith(endpoint):
                metadata = body
        elif frame.kind == FrameKind.CONNECT:
            url = urlparse(frame.payload.decode(errors="replace"))
            kraken_v2 |= venue == "kraken" and url.path.rstrip("/").endswith("/v2")
            streams = parse_qs(url.query).get("streams", [""])[0]
            wanted |= {stream.split("@")[0].upper() for stream in streams.split("/") if stream}
        elif frame.kind == FrameKind.WS_SENT:
            try:
                message = json.loads(frame.payload)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("event") == "subscribe":
                wanted |= set(message.get("pair", []))  # Kraken v1
            elif isinstance(message, dict) and message.get("method") == "subscribe":
                wanted |= set((message.get("params") or {}).get("symbol", []))  # Kraken v2
            elif isinstance(message, dict) and message.get("type") == "subscribe":
                wanted |= set(message.get("product_ids", []))  # Coinbase
    if metadata is None:
        raise ReplayError(f"{reader.path}: no {endpoint} response captured; instruments unknown")
    try:
        instruments = parse_metadata(venue, metadata)
    except InstrumentCacheError as exc:
        raise ReplayError(f"{reader.path}: {exc}") from exc
    if kraken_v2:
        instruments = kraken.v2_instruments(instruments)
    return sorted((i for i in instruments if not wanted or i.venue_symbol in wanted),
                  key=lambda i: i.venue_symbol)


VENUES = {  # the metadata endpoint a capture holds, and the feed
    "binance": ("/exchangeInfo", BinanceFeed),
    "kraken": ("/AssetPairs", KrakenFeed),
    "coinbase": ("/products", CoinbaseFeed),
}


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


def replay(paths: list[str], shm_prefix: str = "fhreplay", depth: int = 10, speed: str = "max",
           summary_json: str | None = None, keep: bool = False) -> dict:
    """Feed captured frames through the venue's decode and book path into `<shm_prefix>.<venue>`; with
    `keep` the segment stays (CLOSED) afterwards for readers and sinks, else it is removed."""
    readers = [CaptureReader(path) for path in paths]
    venues = {reader.header["venue"] for reader in readers}
    if len(venues) != 1:
        raise ReplayError(f"replay one venue at a time; these captures hold {sorted(venues)}")
    venue = venues.pop()
    if venue not in VENUES:
        raise ReplayError(f"replay of {venue} captures is not implemented yet (supported: {', '.join(VENUES)})")
    factor = _speed_factor(speed)
    endpoint, feed_class = VENUES[venue]
    instruments = _captured_instruments(readers[0], venue, endpoint)
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
        tmp = f"{summary_json}.tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, summary_json)
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
