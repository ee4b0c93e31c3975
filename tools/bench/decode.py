"""`fh bench decode`: one venue frame decoded, applied to its book and published to shm, per message.

Binance: 40-level depth diffs (20 bids, 20 asks near the touch) on a 1,000-level book; Binance USD-M
the same in the futures shape (T, pu) under the futures rule (pu chains).
Kraken v1: single-level updates on a depth-10 book, each with its checksum verified.
Coinbase Advanced Trade: l2_data updates of 5 levels on a 2,000-level book, sequence checked.
OKX: `books` updates of 40 levels (20 bids, 20 asks) on a 400-level book, seqId chained, checksum 0
as OKX sends it since 2026-06 (not verified).
Bybit v5: `orderbook.50` deltas of 50 levels (25 bids, 25 asks near the touch), `u` checked, the book
cut to 50 levels after each.
The timing is of `feed.on_frame`, the call a venue worker makes per frame: Python included.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from feedhandler.book import BookStore
from feedhandler.book_kernels import ASK, BID
from feedhandler.venues.binance import BinanceFeed
from feedhandler.venues.binance_usdm import BinanceFuturesFeed
from feedhandler.venues.bybit import BybitFeed
from feedhandler.venues.coinbase import CoinbaseFeed
from feedhandler.venues.kraken import KrakenFeed
from feedhandler.venues.okx import OkxFeed
from feedhandler.sync import SyncState
from feedhandler.instruments import Instrument
from shm.fixedpoint import format_decimal
from shm.layout import Counter
from shm.segment import SegmentWriter

from ..warmup import load_kernels
from .stats import machine, percentiles

MID = 6_500_000  # 65000.00


def _time_frames(feed, frames: list[bytes]) -> np.ndarray:
    for frame in frames[:200]:  # compile and warm
        feed.on_frame(frame, 0)
    timings = np.empty(len(frames) - 200, np.int64)
    for k, frame in enumerate(frames[200:]):
        started = time.perf_counter_ns()
        feed.on_frame(frame, started)
        timings[k] = time.perf_counter_ns() - started
    return timings


def _timed(prefix: str, feed_class: type, instrument: Instrument, capacity: int, snapshot: bytes,
           frames: list[bytes]) -> np.ndarray:
    """`frames` timed through a feed of `instrument` whose book `snapshot` (a frame) made live; an
    error if they broke the book (a gap, a failed checksum): their timings would be of another path."""
    with SegmentWriter.create(prefix, instrument.venue, [instrument.spec(capacity)], depth=10,
                              ring_slots=1 << 16) as writer:
        feed = feed_class([instrument], writer, capacity=capacity)
        feed.on_frame(snapshot, 0)
        timings = _time_frames(feed, frames)
        counters = writer.counters[0]
        if counters[Counter.GAPS] or counters[Counter.CHECKSUM_FAIL] or feed.state(0) != SyncState.LIVE:
            raise RuntimeError(f"{instrument.venue} benchmark frames broke their book (a gap or a failed checksum)")
        writer.close(unlink=True)
    return timings


def _diff_side(rng: np.random.Generator, sign: int, n: int, max_qty: int) -> list[tuple[int, int]]:
    """`n` random changes of one side (sign -1 bids, +1 asks) as (price, qty) mantissas: prices a few
    ticks from MID, a quarter of them deletes (qty 0)."""
    ticks = MID + sign * (1 + rng.exponential(12, n).astype(np.int64))
    qtys = np.where(rng.random(n) < 0.25, 0, rng.integers(1, max_qty, n))
    return list(zip(ticks.tolist(), qtys.tolist()))


def _binance_frames(rng: np.random.Generator, count: int, futures: bool = False) -> list[bytes]:
    """Diffs with update ids 1001.. (futures: with T, and pu chaining each on the one before)."""
    frames = []
    for k in range(count):
        levels = {}
        for side, sign in (("b", -1), ("a", 1)):
            levels[side] = [[format_decimal(p, 2), format_decimal(q, 8)] for p, q in _diff_side(rng, sign, 20, 10**8)]
        data = {"e": "depthUpdate", "E": 1700000000000 + k, **({"T": 1700000000000 + k} if futures else {}),
                "s": "BTCUSDT", "U": 1001 + k, "u": 1001 + k, **({"pu": 1000 + k} if futures else {}), **levels}
        frames.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":")).encode())
    return frames


def _binance(prefix: str, count: int, rng: np.random.Generator, futures: bool = False) -> np.ndarray:
    venue, feed_class = ("binance_usdm", BinanceFuturesFeed) if futures else ("binance", BinanceFeed)
    instrument = Instrument(venue, "BTCUSDT", "BTC", "USDT", 2, 8)
    with SegmentWriter.create(prefix, venue, [instrument.spec(8192)], depth=10, ring_slots=1 << 16) as writer:
        feed = feed_class([instrument], writer)
        ladder = np.arange(1, 1001)
        snapshot = {"lastUpdateId": 1000,
                    "bids": [[format_decimal(MID - int(t), 2), "1.00000000"] for t in ladder],
                    "asks": [[format_decimal(MID + int(t), 2), "1.00000000"] for t in ladder]}
        feed.on_frame(_binance_frames(rng, 1, futures)[0].replace(b'"U":1001,"u":1001', b'"U":1000,"u":1000'), 0)
        feed.on_snapshot("BTCUSDT", json.dumps(snapshot).encode(), 0)
        timings = _time_frames(feed, _binance_frames(rng, count, futures))
        writer.close(unlink=True)
    return timings


def _binance_usdm(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    return _binance(prefix, count, rng, futures=True)


def _kraken_frames(rng: np.random.Generator, count: int) -> tuple[bytes, list[bytes]]:
    """A depth-10 snapshot and `count` one-level updates whose checksums a shadow book computes."""
    shadow = BookStore([64], window=256)
    asks = [[format_decimal(MID + t, 1), "1.00000000", "1.0"] for t in range(1, 11)]
    bids = [[format_decimal(MID - t, 1), "1.00000000", "1.0"] for t in range(1, 11)]
    shadow.load(0, np.array([[MID - t, 10**8] for t in range(1, 11)]), np.array([[MID + t, 10**8] for t in range(1, 11)]))
    snapshot = json.dumps([1, {"as": asks, "bs": bids}, "book-10", "XBT/USD"]).encode()
    frames = []
    for _ in range(count):
        side = BID if rng.random() < 0.5 else ASK
        price = MID - 1 - int(rng.integers(0, 10)) if side == BID else MID + 1 + int(rng.integers(0, 10))
        qty = 0 if rng.random() < 0.2 else int(rng.integers(1, 10**8))
        shadow.set(0, side, price, qty)
        shadow.truncate(0, 10)
        level = [format_decimal(price, 1), format_decimal(qty, 8), "1.0"]
        message = [1, {"b" if side == BID else "a": [level], "c": str(shadow.kraken_checksum(0))}, "book-10", "XBT/USD"]
        frames.append(json.dumps(message).encode())
    return snapshot, frames


def _kraken(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    instrument = Instrument("kraken", "XBT/USD", "BTC", "USD", 1, 8)
    snapshot, frames = _kraken_frames(rng, count)
    return _timed(prefix, KrakenFeed, instrument, 64, snapshot, frames)


def _coinbase_message(sequence: int, kind: str, updates: list[tuple[str, int, int]]) -> bytes:
    return json.dumps({"channel": "l2_data", "timestamp": "2026-08-09T21:05:48.505350477Z",
                       "sequence_num": sequence, "events": [{"type": kind, "product_id": "BTC-USD", "updates": [
                           {"side": side, "event_time": "2026-08-09T21:05:48.210883Z",
                            "price_level": format_decimal(price, 2), "new_quantity": format_decimal(qty, 8)}
                           for side, price, qty in updates]}]}, separators=(",", ":")).encode()


def _coinbase(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    instrument = Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8)
    snapshot = [("bid", MID - t, 10**8) for t in range(1, 1001)] + [("offer", MID + t, 10**8) for t in range(1, 1001)]
    frames = []
    for k in range(count):
        updates = []
        for _ in range(5):
            bid = rng.random() < 0.5
            depth = 1 + int(rng.exponential(12))
            qty = 0 if rng.random() < 0.25 else int(rng.integers(1, 10**8))
            updates.append(("bid", MID - depth, qty) if bid else ("offer", MID + depth, qty))
        frames.append(_coinbase_message(k + 1, "update", updates))
    return _timed(prefix, CoinbaseFeed, instrument, 4096, _coinbase_message(0, "snapshot", snapshot), frames)


def _okx_levels(levels: list[tuple[int, int]]) -> list[list[str]]:
    return [[format_decimal(price, 2), format_decimal(qty, 8), "0", "1"] for price, qty in levels]


def _okx_message(action: str, seq: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> bytes:
    return json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT-SWAP"}, "action": action, "data": [
        {"asks": _okx_levels(asks), "bids": _okx_levels(bids), "ts": "1700000000000", "checksum": 0,
         "prevSeqId": seq - 1 if action == "update" else -1, "seqId": seq}]}, separators=(",", ":")).encode()


def _okx(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    instrument = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", 2, 8)
    frames = []
    for k in range(count):
        sides = [sorted(_diff_side(rng, sign, 20, 10**8), reverse=sign < 0) for sign in (-1, 1)]
        frames.append(_okx_message("update", k + 2, *sides))
    ladder = range(1, 401)
    snapshot = _okx_message("snapshot", 1, [(MID - t, 10**8) for t in ladder], [(MID + t, 10**8) for t in ladder])
    return _timed(prefix, OkxFeed, instrument, 1024, snapshot, frames)


def _bybit_message(kind: str, update_id: int, bids: list, asks: list) -> bytes:
    return json.dumps({"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1700000000000 + update_id,
                       "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": update_id, "seq": 7 * update_id},
                       "cts": 1700000000000 + update_id}, separators=(",", ":")).encode()


def _bybit(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    instrument = Instrument("bybit_linear", "BTCUSDT", "BTC", "USDT", 2, 3)
    snapshot = _bybit_message("snapshot", 1000, [[format_decimal(MID - t, 2), "1.000"] for t in range(1, 51)],
                              [[format_decimal(MID + t, 2), "1.000"] for t in range(1, 51)])
    frames = []
    for k in range(count):
        levels = [[[format_decimal(p, 2), format_decimal(q, 3)] for p, q in _diff_side(rng, sign, 25, 10**6)]
                  for sign in (-1, 1)]
        frames.append(_bybit_message("delta", 1001 + k, *levels))
    return _timed(prefix, BybitFeed, instrument, 2048, snapshot, frames)


def compile_kernels(prefix: str) -> None:
    """Every kernel the benchmark calls: each venue's measurement over the frames it warms up on."""
    rng = np.random.default_rng(0)
    for measure in (_binance, _binance_usdm, _coinbase, _kraken, _okx, _bybit):
        measure(prefix, 201, rng)


def run(frames: int = 20_000, seed: int = 3) -> dict[str, object]:
    load_kernels("fh bench decode", compile_kernels)
    rng = np.random.default_rng(seed)
    prefix = f"fhbench{os.getpid()}"
    result: dict[str, object] = {}
    for venue, measure in (("binance", _binance), ("binance_usdm", _binance_usdm), ("coinbase", _coinbase),
                           ("kraken", _kraken), ("okx", _okx), ("bybit_linear", _bybit)):
        timings = measure(prefix, frames + 200, rng)
        figures = percentiles(timings, "decode")
        result[venue] = {"p50_ns": figures["decode_p50_ns"], "p99_ns": figures["decode_p99_ns"],
                         "msgs_per_s": 1e9 / float(np.mean(timings))}
    result["machine"] = machine()
    return result
