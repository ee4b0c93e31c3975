"""`fh warmup`: compile every kernel the live pipeline calls (venue steps, snapshot paths, the
batch loop replays use, the NBBO aggregator, the Kafka sink's msgpack encoder) into numba's on-disk
cache, in one process, so that `fh run` starts hot. A cold cache takes minutes on a small box; a
warm one makes this a few seconds. Every venue protocol of the registry is driven the way its worker
drives it, through its simulator encoder (feedhandler/warm.py)."""
from __future__ import annotations

import os
import time

import numpy as np

from feedhandler.config import RunConfig, VenueConfig
from feedhandler.venues import VENUES
from feedhandler.venues.base import Venue
from feedhandler.warm import drive
from shm.histogram import HIST_WORDS, record_many
from workers import aggregator
from workers.sinks.msgpack_maps import MapEncoder


def protocols() -> list[Venue]:
    """One venue per feed class: variants share their protocol's kernels."""
    return list({venue.feed: venue for venue in reversed(VENUES.values())}.values())[::-1]


def run() -> dict:
    started = time.perf_counter()
    prefix = f"fhwarmup{os.getpid()}"
    venues = protocols()
    for venue in venues:
        drive(venue, prefix, private=True).close()
    compiled_venues = time.perf_counter() - started
    aggregator.warm(RunConfig(venues={v.name: VenueConfig(v.name, ("BTC-USD",), "", "") for v in venues}), prefix)
    MapEncoder(("trade_id", "symbol")).encode({"trade_id": np.zeros(1, np.int64), "symbol": np.array(["X"], object)},
                                              {})
    record_many(np.zeros(HIST_WORDS, np.int64), np.zeros(1, np.int64))  # the sinks' latency histogram
    return {"venues_s": round(compiled_venues, 1), "total_s": round(time.perf_counter() - started, 1)}
