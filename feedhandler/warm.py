"""Compile a venue protocol's kernels by driving its feed over a synthetic market the way a worker
drives it: a snapshot (asked for over REST, or sent on the socket), then frames one call at a time.
A venue worker drives its own protocol before it creates its segment, so a stop while kernels
compile cold (minutes) leaves nothing behind, and the first live frame finds them compiled.

With `batch`, a batch of frames follows as replays send them: the replay loop (venues.dispatch)
calls every protocol's step, so it is compiled once they all are (`fh warmup` runs it after the
protocols, `fh replay` before it reads its capture); a live worker never calls it."""
from __future__ import annotations

import os
import time

from shm.segment import SegmentWriter

from .capture import FrameBatch, FrameKind
from .instruments import Instrument
from .sim_market import Market
from .venues.base import FetchSnapshot, PlanOptions, Venue

STEPS = 200


def drive(venue: Venue, prefix: str, private: bool = False, batch: bool = False) -> SegmentWriter:
    """The writer of the segment `<prefix>.<venue>` the feed was driven into; `private`: unlinked at
    once, so that nothing is left under the prefix even if this process is killed meanwhile."""
    symbol, base, quote = venue.sample_symbol
    instrument = Instrument(venue.name, symbol, base, quote, 2, 8)
    writer = SegmentWriter.create(prefix, venue.name, [instrument.spec(4096)], depth=20, ring_slots=1024)
    if private:
        os.unlink(writer.path)
    market = Market(mid=10_000_000, seed=1)
    encoder = venue.encoder(symbol, 2, 8)
    options = PlanOptions("ws://localhost", "http://localhost", book_depth=venue.limits.default_book_depth)
    feed = venue.feed([instrument], writer, options=options)
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
    if batch:
        frames = encoder.frames(market, market.step(), now)
        feed.on_batch(FrameBatch.of_frames([(FrameKind.WS_RECV, 0, now, frame) for frame in frames]))
    feed.on_disconnect(0, now)  # what a dropped connection runs: its books invalidated from Python
    return writer
