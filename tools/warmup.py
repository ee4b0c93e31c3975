"""`fh warmup`: compile every kernel the live pipeline calls (venue steps, snapshot paths, the NBBO
aggregator, the Kafka sink's msgpack encoder) into numba's on-disk cache, in one process, so that
`fh run` starts hot. A cold cache takes minutes on a small box; a warm one makes this a few seconds."""
from __future__ import annotations

import os
import time

import numpy as np

from feedhandler.config import AggregatorConfig, RunConfig, VenueConfig
from feedhandler.feed import BinanceFeed, CoinbaseFeed, KrakenFeed
from feedhandler.instruments import Instrument
from shm.histogram import HIST_WORDS, record_many
from shm.segment import SegmentWriter
from workers.aggregator import Aggregator
from workers.sinks.msgpack_maps import MapEncoder

from .sim.market import Market
from .sim.protocols import BinanceEncoder, CoinbaseAdvancedEncoder, KrakenV2Encoder

STEPS = 200


def _drive(venue: str, prefix: str) -> SegmentWriter:
    """A synthetic market through one venue's feed, the way the worker calls it."""
    symbol = {"binance": "BTCUSDT", "kraken": "BTC/USD", "coinbase": "BTC-USD"}[venue]
    instrument = Instrument(venue, symbol, "BTC", "USDT" if venue == "binance" else "USD", 2, 8)
    writer = SegmentWriter.create(prefix, venue, [instrument.spec(4096)], depth=20, ring_slots=1024)
    market = Market(mid=10_000_000, seed=1)
    now = time.time_ns()
    if venue == "binance":
        feed, encoder = BinanceFeed([instrument], writer), BinanceEncoder(symbol, 2, 8)
        for frame in encoder.frames(market.step(), now):
            feed.on_frame(frame, now)
        feed.books_to_resync()
        feed.on_snapshot(symbol, encoder.snapshot(market), now)
        frames = lambda step: encoder.frames(step, now)  # noqa: E731
    elif venue == "kraken":
        feed, encoder = KrakenFeed([instrument], writer), KrakenV2Encoder(symbol, 2, 8)
        feed.on_frame(encoder.snapshot(market), now)
        frames = lambda step: encoder.frames(market, step, now)  # noqa: E731
    else:
        feed, encoder = CoinbaseFeed([instrument], writer), CoinbaseAdvancedEncoder(symbol, 2, 8)
        feed.on_frame(encoder.snapshot(market, now), now)
        frames = lambda step: encoder.frames(step, now)  # noqa: E731
    for _ in range(STEPS):
        for frame in frames(market.step()):
            feed.on_frame(frame, now)
    return writer


def run() -> dict:
    started = time.perf_counter()
    prefix = f"fhwarmup{os.getpid()}"
    venues = ("binance", "coinbase", "kraken")
    writers = [_drive(venue, prefix) for venue in venues]
    compiled_venues = time.perf_counter() - started
    config = RunConfig(prefix=prefix, aggregator=AggregatorConfig(stale_ms=0), venues={
        v: VenueConfig(v, ("BTC-USD",), "", "") for v in venues})
    for writer in writers:
        writer.heartbeat()
    aggregator = Aggregator(config)
    try:
        aggregator.start(wait_s=0)
        aggregator.poll(10)
        aggregator.housekeeping()
    finally:
        aggregator.close()
        os.unlink(aggregator.writer.path)
        os.unlink(aggregator.latency.path)
        for writer in writers:
            writer.close(unlink=True)
    MapEncoder(("trade_id", "symbol")).encode({"trade_id": np.zeros(1, np.int64), "symbol": np.array(["X"], object)},
                                              {})
    record_many(np.zeros(HIST_WORDS, np.int64), np.zeros(1, np.int64))  # the sinks' latency histogram
    return {"venues_s": round(compiled_venues, 1), "total_s": round(time.perf_counter() - started, 1)}
