"""Readers for tests whose writer is the test process itself: it compiles kernels for seconds between
heartbeats, which a live writer never does, so these readers do not judge liveness by the heartbeat
(a dead writer's lock still counts). Liveness itself is specified in test_reader and test_pipeline."""
from shm.reader import VenueReader


def in_process_reader(venue: str, prefix: str) -> VenueReader:
    return VenueReader(venue, prefix=prefix, stale_after_s=3600.0)
