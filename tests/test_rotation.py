"""Binance connection rotation against the simulator, with a lifetime scaled to seconds: every
connection is replaced by a successor before the venue would cut it, the books move over as their
changes line up, and not one book is invalid or fetched again across the rotations."""
import os
import subprocess

import pytest

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from shm.layout import Status
from shm.reader import StatusEvent, VenueReader

from pipeline import FH, REPO, VENUE_SYMBOLS, Pipeline, wait_for

STARTUP_S = 240  # a cold numba cache compiles for minutes on a 2-core box
ROTATE_AFTER_S = 1.5
ROTATIONS = 3


@pytest.fixture
def rotating(tmp_path):
    subprocess.run(FH + ["warmup"], cwd=REPO, check=True, capture_output=True)
    running = Pipeline(tmp_path, f"fhrot{os.getpid()}", venue_options={"binance": f"rotate_after_s = {ROTATE_AFTER_S}"})
    running.start()
    try:
        yield running
    except AssertionError:
        print(running.logs())
        raise
    finally:
        running.stop()


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
    rotating.stop()
    snapshots, connects = 0, 0
    for path in sorted((rotating.workdir / "captures").glob("binance*")):
        for frame in CaptureReader(str(path)).frames():
            connects += frame.kind == FrameKind.CONNECT
            snapshots += frame.kind == FrameKind.REST and "/api/v3/depth" in split_rest(frame.payload)[1]
    assert snapshots == len(VENUE_SYMBOLS["binance"]) and connects >= ROTATIONS + 1
