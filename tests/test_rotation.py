"""Binance connection rotation against the strict simulator, its limits scaled to seconds (a 2.5 s
connection lifetime, a ping every 0.3 s to be answered within 1.5 s): every connection is replaced
by a successor before the venue would cut it, the books move over as their changes line up, and not
one book is invalid or fetched again across the rotations."""
import os

import pytest

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from shm.layout import Status
from shm.reader import StatusEvent, VenueReader

from pipeline import SPOT_VENUES, VENUE_SYMBOLS, Pipeline, last_books, wait_for
from tools.replay import replay

STARTUP_S = 240  # a cold numba cache compiles for minutes on a 2-core box
ROTATE_AFTER_S = 1.5
ROTATIONS = 3
SIM_LIMITS = ("--limit", "binance.lifetime_s=2.5", "--limit", "binance.ping_every_s=0.3",
              "--limit", "binance.pong_timeout_s=1.5")


@pytest.fixture
def rotating(tmp_path):
    with Pipeline(tmp_path, f"fhrot{os.getpid()}", venue_options={"binance": f"rotate_after_s = {ROTATE_AFTER_S}"},
                  sim_args=SIM_LIMITS, venues=SPOT_VENUES).serving() as running:
        yield running


def test_rotations_keep_every_book_valid_without_a_snapshot(rotating):
    def books_valid():
        try:
            with VenueReader("binance", prefix=rotating.prefix) as reader:
                return all(reader.book(i.index).valid for i in reader.instruments)
        except Exception:
            return False
    wait_for(books_valid, STARTUP_S, "binance books valid")
    with VenueReader("binance", prefix=rotating.prefix) as reader:
        cursor, before = reader.events(), reader.totals()
        seen, invalid_samples = [], 0

        def rotated():
            nonlocal invalid_samples
            seen.extend(cursor.poll())
            invalid_samples += not all(reader.book(i.index).valid for i in reader.instruments)
            return sum(isinstance(e, StatusEvent) and e.status == Status.CONNECT for e in seen) >= ROTATIONS
        wait_for(rotated, 30, f"{ROTATIONS} rotations", every_s=0.005)
        after = reader.totals()
    book_status = [e for e in seen if isinstance(e, StatusEvent) and e.instrument is not None]
    assert invalid_samples == 0 and book_status == []  # not one book went invalid, no gap, no resync
    assert (after["gaps"], after["resyncs"]) == (before["gaps"], before["resyncs"])
    assert after["book_updates"] > before["book_updates"]  # and the books kept moving
    closed_by_sim = rotating.sim_stats("binance")["closed"]
    rotating.stop(unlink=False)
    assert closed_by_sim == {}  # no lifetime cut, no pong timeout, no rate close: the worker rotated first
    live = last_books(rotating.prefix, "binance")
    snapshots, connects = 0, 0
    paths = sorted(str(p) for p in (rotating.workdir / "captures").glob("binance-*"))  # not binance_usdm-...
    for path in paths:
        for frame in CaptureReader(path).frames():
            connects += frame.kind == FrameKind.CONNECT
            snapshots += frame.kind == FrameKind.REST and "/api/v3/depth" in split_rest(frame.payload)[1]
    assert snapshots == len(VENUE_SYMBOLS["binance"]) and connects >= ROTATIONS + 1
    replayed = replay(paths, shm_prefix=f"{rotating.prefix}r", depth=10)["books"]  # the hand-overs are captured
    assert {key: (book["bids"], book["asks"]) for key, book in replayed.items()} == live
    assert all(book["valid"] and book["gaps"] == 0 for book in replayed.values())
