"""The NBBO follows a venue segment's liveness rule: valid only while the aggregator holds its writer
lock and its heartbeat is fresh. The fault tests run their own aggregator (`fh aggregator`, a process
of its own) over a demo venue writer (`fh demo` as the binance segment). The aggregator judges a
venue's heartbeat on its own monotonic clock, so wall-clock steps do not move venues in or out."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from feedhandler.config import AggregatorConfig, RunConfig, VenueConfig
from feedhandler.nbbo import V_UP
from shm.layout import Reason, Status
from shm.nbbo_reader import NbboReader
from shm.ring import publish_book, publish_status
from shm.segment import InstrumentSpec, Segment, SegmentError, SegmentWriter
from tests.pipeline import REPO, wait_for
from tools.metrics import Collector
from workers.aggregator import VENUE_STALE_S, Aggregator

STARTUP_S = 300  # a cold numba cache compiles the aggregator's kernels for minutes
FH = [sys.executable, "-m", "tools.cli"]
SYMBOLS = ("BTC-USDT", "ETH-USDT")  # what the demo writer publishes


def _attached(prefix: str, name: str) -> bool:
    try:
        with Segment(prefix, name) as segment:
            return segment.writer_alive()
    except SegmentError:
        return False


def _all_valid(prefix: str) -> bool:
    try:
        with NbboReader(prefix) as nbbo:
            return all(nbbo.quote(symbol).valid for symbol in SYMBOLS)
    except SegmentError:
        return False


def exported_valid(collector: Collector) -> dict[str, str]:
    """symbol -> the value of its fh_nbbo_valid sample in what `fh metrics` serves now."""
    lines = [line for line in collector.metrics().splitlines() if line.startswith("fh_nbbo_valid{")]
    return {line.split('symbol="')[1].split('"')[0]: line.rsplit(" ", 1)[1] for line in lines}


@pytest.fixture
def aggregator(shm_prefix, tmp_path):
    """A running aggregator whose NBBO of every demo symbol is valid: (its process, the prefix)."""
    config = tmp_path / "run.toml"
    config.write_text(f'[run]\nprefix = "{shm_prefix}"\n[aggregator]\nidle = "block"\n'
                      f'[venues.binance]\nsymbols = {json.dumps(SYMBOLS)}\nws_url = "ws://127.0.0.1:9"\n'
                      f'rest_url = "http://127.0.0.1:9"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = open(tmp_path / "processes.log", "w")
    demo = subprocess.Popen(FH + ["demo", "--prefix", shm_prefix, "--venue", "binance", "--duration", "900"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=logs)
    started = [demo]
    try:
        wait_for(lambda: _attached(shm_prefix, "binance"), STARTUP_S, "the demo venue writer")
        started.append(subprocess.Popen(FH + ["aggregator", "-c", str(config)], cwd=REPO, env=env,
                                        stdout=subprocess.DEVNULL, stderr=logs))
        wait_for(lambda: _all_valid(shm_prefix), STARTUP_S, "a valid NBBO of every symbol")
        yield started[1], shm_prefix
    except AssertionError:
        print((tmp_path / "processes.log").read_text()[-4000:])
        raise
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGCONT)  # a stopped process takes SIGKILL either way; be explicit
            process.kill()
            process.wait()
        logs.close()


def test_the_nbbo_of_a_killed_aggregator_is_invalid_at_once_and_fh_metrics_exports_it(aggregator):
    process, prefix = aggregator
    collector = Collector(prefix)
    try:
        assert exported_valid(collector) == {symbol: "1" for symbol in SYMBOLS}
        with NbboReader(prefix) as nbbo:
            process.kill()
            process.wait()  # reaped: the kernel has dropped its writer lock
            quotes = [nbbo.quote(symbol) for symbol in SYMBOLS]
            assert not any(quote.valid for quote in quotes)
            assert not any(venue.included for quote in quotes for venue in quote.venues)
            assert all(nbbo.included(symbol) == () for symbol in SYMBOLS)
        assert exported_valid(collector) == {symbol: "0" for symbol in SYMBOLS}
    finally:
        collector.close()


def test_the_nbbo_of_a_stalled_aggregator_turns_invalid_past_the_heartbeat_bound_and_back(aggregator):
    process, prefix = aggregator
    with NbboReader(prefix, stale_after_s=0.5) as nbbo:
        process.send_signal(signal.SIGSTOP)  # alive (its lock held) but no longer heartbeating
        wait_for(lambda: not nbbo.quote("BTC-USDT").valid, 60, "the stalled aggregator's NBBO invalid")
        assert nbbo.segment.heartbeat_age_s() > nbbo.stale_after_s and nbbo.segment.writer_alive(3600.0)  # lock held
        process.send_signal(signal.SIGCONT)
        wait_for(lambda: nbbo.quote("BTC-USDT").valid, 60, "the NBBO valid again once it runs")


HOUR_NS = 3600 * 10**9


@contextlib.contextmanager
def aggregating(prefix: str, stale_ms: float = 0) -> Iterator[tuple[Aggregator, SegmentWriter]]:
    """An aggregator (in this process) attached to a live venue writer: (aggregator, writer)."""
    writer = SegmentWriter.create(prefix, "binance", [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 8)], 4, 16)
    config = RunConfig(prefix=prefix, aggregator=AggregatorConfig(stale_ms=stale_ms),
                       venues={"binance": VenueConfig("binance", ("BTC-USDT",), "", "")})
    aggregator = Aggregator(config)
    aggregator.start(wait_s=0)
    try:
        assert aggregator.state.venue_state[0, V_UP] == 1
        yield aggregator, writer
    finally:
        aggregator.close()
        writer.close()


@pytest.fixture
def attached_venue(shm_prefix):
    with aggregating(shm_prefix) as attached:
        yield attached


def test_a_venue_whose_heartbeat_stops_leaves_even_if_its_last_stamp_is_ahead_of_the_wall_clock(attached_venue):
    aggregator, writer = attached_venue
    writer.heartbeat(time.time_ns() + HOUR_NS)  # the wall clock stepped back an hour, then the worker hung
    aggregator.housekeeping()

    def excluded():
        aggregator.housekeeping()
        return aggregator.state.venue_state[0, V_UP] == 0
    wait_for(excluded, 30 * VENUE_STALE_S, "the silent venue excluded")


def test_a_heartbeating_venue_stays_when_its_stamps_are_behind_the_wall_clock(attached_venue):
    aggregator, writer = attached_venue
    started = time.monotonic()
    while time.monotonic() - started < 3 * VENUE_STALE_S:  # the wall clock stepped forward an hour
        writer.heartbeat(time.time_ns() - HOUR_NS)
        aggregator.housekeeping()
        assert aggregator.state.venue_state[0, V_UP] == 1
        time.sleep(0.1)


def test_a_quote_stamped_ahead_of_the_wall_clock_still_leaves_the_nbbo_stale_ms_after_it_came(shm_prefix):
    """The wall clock stepped back an hour after the venue received its last book: judged by that
    stamp the quote would count as fresh for an hour; its age runs on CLOCK_MONOTONIC instead."""
    with aggregating(shm_prefix, stale_ms=300) as (aggregator, writer), NbboReader(shm_prefix) as nbbo:
        ahead = time.time_ns() + HOUR_NS
        publish_status(writer.ring, writer.ring_control, 0, int(Status.BOOK_VALID), int(Reason.NONE), 0, ahead, ahead)
        publish_book(writer.ring, writer.ring_control, 0, 1, 0, ahead, ahead, 100, 1, 101, 1, 1, 1)

        def venue_quote():
            writer.heartbeat()
            aggregator.housekeeping()
            aggregator.poll()
            return nbbo.quote("BTC-USDT").venues[0]
        wait_for(lambda: venue_quote().included, 30, "the venue's quote in the NBBO")
        included_at = time.monotonic()
        wait_for(lambda: venue_quote().reason == Reason.STALE, 30, "the quiet quote excluded as stale")
        assert time.monotonic() - included_at >= 0.3
