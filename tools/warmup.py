"""`fh warmup`: compile every kernel the live pipeline calls (venue steps, snapshot paths, the
batch loop replays use, the NBBO aggregator, the Kafka sink's msgpack encoder) into numba's on-disk
cache, in one process, so that `fh run` starts hot. A cold cache takes minutes on a small box; a
warm one makes this a few seconds. Every venue protocol of the registry is driven the way its worker
drives it, through its simulator encoder."""
from __future__ import annotations

import os
import time

import numpy as np

from feedhandler.capture import FrameBatch, FrameKind
from feedhandler.config import AggregatorConfig, RunConfig, VenueConfig
from feedhandler.instruments import Instrument
from feedhandler.sim_market import Market
from feedhandler.venues import VENUES
from feedhandler.venues.base import FetchSnapshot, PlanOptions, Venue
from shm.histogram import HIST_WORDS, record_many
from shm.segment import SegmentWriter
from workers.aggregator import Aggregator
from workers.sinks.msgpack_maps import MapEncoder

STEPS = 200


def protocols() -> list[Venue]:
    """One venue per feed class: variants share their protocol's kernels."""
    return list({venue.feed: venue for venue in reversed(VENUES.values())}.values())[::-1]


def _drive(venue: Venue, prefix: str) -> SegmentWriter:
    """A synthetic market through one venue's feed, the way the worker calls it: a snapshot (asked
    for over REST, or sent on the socket), then every frame one call at a time, then a batch."""
    symbol, base, quote = venue.sample_symbol
    instrument = Instrument(venue.name, symbol, base, quote, 2, 8)
    writer = SegmentWriter.create(prefix, venue.name, [instrument.spec(4096)], depth=20, ring_slots=1024)
    market = Market(mid=10_000_000, seed=1)
    encoder = venue.encoder(symbol, 2, 8)
    feed = venue.feed([instrument], writer, options=PlanOptions("ws://localhost", "http://localhost"))
    now = time.time_ns()
    feed.on_connect(0, now, venue.plan((symbol,), feed.options)[0].url)
    for frame in encoder.frames(market, market.step(), now):
        feed.on_frame(frame, now)
    requests = [r for r in feed.requests() if isinstance(r, FetchSnapshot)]
    for request in requests:
        feed.on_rest(request.request.url, encoder.snapshot(market, now), now)
    if not requests:
        feed.on_frame(encoder.snapshot(market, now), now)
    for _ in range(STEPS):
        for frame in encoder.frames(market, market.step(), now):
            feed.on_frame(frame, now)
    frames = encoder.frames(market, market.step(), now)
    feed.on_batch(FrameBatch.of_frames([(FrameKind.WS_RECV, 0, now, frame) for frame in frames]))
    return writer


def run() -> dict:
    started = time.perf_counter()
    prefix = f"fhwarmup{os.getpid()}"
    venues = protocols()
    writers = [_drive(venue, prefix) for venue in venues]
    compiled_venues = time.perf_counter() - started
    config = RunConfig(prefix=prefix, aggregator=AggregatorConfig(stale_ms=0), venues={
        v.name: VenueConfig(v.name, ("BTC-USD",), "", "") for v in venues})
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
