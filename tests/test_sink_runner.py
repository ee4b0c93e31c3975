"""The sink loop's contract, with a sink that acknowledges when told to (to order acknowledgements
and failures the way no real service can on demand): positions are committed only in batch order,
a failure sends every batch in flight again, lingering gathers records into fewer deliveries, and a
writer (aggregator, venue worker) replaced or killed under a batch never crashes the sink."""
from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from feedhandler.config import SinkConfig
from shm.layout import BOOK_UPDATE_ID, BOOK_VALID, NBBO_ASK_PX, NBBO_ASK_QTY, NBBO_BID_PX, NBBO_BID_QTY, Header
from shm.ring import write_position
from shm.segment import InstrumentSpec, Segment, SegmentWriter
from tests import procs
from tools import demo
from shm.latency import latency_path
from workers.sinks import source
from workers.sinks.runner import Sink, SinkConfigError, SinkDown, SinkRunner


class HeldSink(Sink):
    """Acknowledges a batch only once the test released it; fails those the test failed."""

    name = "held"
    keeps_positions = False

    def __init__(self, in_flight: int):
        self.in_flight = in_flight
        self.sent: list[int] = []  # first ring position of each batch handed over, in order
        self.released: set[int] = set()
        self.failing: set[int] = set()

    def send(self, batch, positions) -> int:
        first = min(int(rows[0, 0]) for _, rows in batch.trade_rows) if batch.trade_rows else -1
        self.sent.append(first)
        return first

    def acknowledged(self, ticket: int, wait: bool) -> int | None:
        if ticket in self.failing:
            self.failing.discard(ticket)
            raise SinkDown("injected")
        return 1 if ticket in self.released or ticket == -1 else None


@pytest.fixture
def ring(shm_prefix):
    demo.run(shm_prefix, "demo", duration_s=30, rate=1e9, ring_slots=1 << 14, changes=3000)
    return shm_prefix


class KeepingSink(Sink):
    """Acknowledges every batch at once and keeps them, to look at what was delivered."""

    name = "keeping"
    keeps_positions = False

    def __init__(self):
        self.batches = []

    def send(self, batch, positions) -> int:
        self.batches.append(batch)
        return 1


def runner_of(prefix: str, sink: Sink, tmp_path, rings: tuple[str, ...] = ("demo",), **settings) -> SinkRunner:
    config = SinkConfig("held", "unused", state_dir=str(tmp_path), snapshot_interval_s=0.0, **settings)
    runner = SinkRunner(sink, config, prefix, list(rings))
    runner.start()
    return runner


def test_positions_advance_only_as_the_oldest_batch_in_flight_is_acknowledged(ring, tmp_path):
    sink = HeldSink(in_flight=3)
    runner = runner_of(ring, sink, tmp_path, batch_max=500)
    for _ in range(3):
        runner.cycle()
    assert len(sink.sent) == 3 and runner.sources[0].acked.next == 0
    sink.released.add(sink.sent[1])  # the second is acknowledged first: nothing can be committed yet
    runner.cycle()
    assert runner.sources[0].acked.next == 0 and runner.counters["batches"] == 0
    sink.released.add(sink.sent[0])
    runner.cycle()
    assert runner.sources[0].acked.next == 1000 and runner.counters["batches"] == 2


def test_a_failed_batch_sends_every_batch_in_flight_again_in_order(ring, tmp_path):
    sink = HeldSink(in_flight=2)
    runner = runner_of(ring, sink, tmp_path, batch_max=500, retry_max_s=0.0)
    runner.cycle()
    runner.cycle()
    first, second = sink.sent
    sink.failing.add(first)
    runner.cycle()
    assert runner.counters["retried"] == 1 and runner.sources[0].acked.next == 0
    assert runner.last_error == "injected" and runner.counters["up"] == 0
    runner._retry_at = 0.0  # skip the backoff
    sink.released.update((first, second))
    runner.cycle()
    assert sink.sent == [first, second, first, second]
    assert runner.sources[0].acked.next == 1000
    assert runner.last_error == "" and runner.counters["up"] == 1  # up again: no stale error in the stats


def test_a_lingering_sink_delivers_at_once_only_when_batch_max_records_wait(ring, tmp_path):
    with Segment(ring, "demo") as segment:
        head = int(write_position(segment.ring_control))
    sink = HeldSink(in_flight=1)
    sink.released = range(1 << 20)  # everything acknowledged
    batch_max = head * 2 // 5  # two batches, then a fifth of the records remains
    runner = runner_of(ring, sink, tmp_path, batch_max=batch_max, linger_s=60.0)
    runner.cycle()
    runner.cycle()  # more than batch_max were waiting: no lingering
    assert runner.sources[0].acked.next == 2 * batch_max
    assert runner.cycle() == 0 and len(sink.sent) == 2  # fewer than batch_max wait: linger
    runner._linger_until = 0.0  # linger_s has passed
    runner.cycle()
    assert runner.sources[0].acked.next == head


class MisconfiguredSink(HeldSink):
    def open(self) -> None:
        raise SinkConfigError("schema refused")


def test_a_sink_that_cannot_start_leaves_no_latency_file_and_no_lock(ring, tmp_path):
    with pytest.raises(SinkConfigError, match="schema refused"):
        runner_of(ring, MisconfiguredSink(in_flight=1), tmp_path)
    assert not os.path.exists(latency_path(ring, "sink-held"))
    runner_of(ring, HeldSink(in_flight=1), tmp_path).close()  # the same sink starts: its lock was released


def nbbo_writer(prefix: str, bid_px: int, changes: int) -> SegmentWriter:
    """An aggregator's NBBO segment over the demo venue, every symbol quoted bid_px / bid_px + 2 after
    `changes` changes."""
    writer = SegmentWriter.create(prefix, "nbbo", [InstrumentSpec(s, s, 2, 5, 1) for s in ("BTC-USDT", "ETH-USDT")],
                                  depth=2, ring_slots=16, labels=["demo"])
    for block in writer.books:
        block[[BOOK_VALID, BOOK_UPDATE_ID, NBBO_BID_PX, NBBO_BID_QTY, NBBO_ASK_PX, NBBO_ASK_QTY]] = (
            1, changes, bid_px, 1, bid_px + 2, 1)
    return writer


def test_a_batch_holding_trades_survives_an_aggregator_restart_and_carries_the_new_nbbo(ring, tmp_path, monkeypatch):
    monkeypatch.setattr(source, "REATTACH_EVERY_S", 0.0)  # the successor is attached the first time it is looked for
    sink = KeepingSink()
    runner = runner_of(ring, sink, tmp_path, rings=("demo", "nbbo"), batch_max=100)
    nbbo = runner.sources[1]
    first = nbbo_writer(ring, 100, changes=1)
    while not nbbo.attached:
        runner.cycle()
    first.close()  # the aggregator stops; its successor takes over the name
    second = nbbo_writer(ring, 200, changes=7)
    try:
        restarted_at = len(sink.batches)
        while nbbo.epoch != int(second.header[Header.START_NS]):
            second.heartbeat()
            assert runner.cycle(), "the demo ring ran dry before the NBBO source moved to the new aggregator"
        moved = sink.batches[-1]  # the batch during which the source moved holds trades
        assert len(sink.batches) > restarted_at and len(moved.trades["seq"])
        trades = moved.trades.records()
        assert {(t["nbbo_bid_px"], t["nbbo_ask_px"], t["nbbo_changes"]) for t in trades} == {(200, 202, 7)}
    finally:
        runner.close()
        second.close()


def test_a_book_left_torn_by_a_writer_killed_mid_publish_is_a_gap_not_a_crash(shm_prefix, tmp_path):
    child = multiprocessing.get_context("spawn").Process(target=procs.writer_killed_mid_publish,
                                                         args=(shm_prefix, "torn", 3))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    sink = KeepingSink()
    runner = runner_of(shm_prefix, sink, tmp_path, rings=("torn",), batch_max=100)
    try:
        while runner.sources[0].acked is None or runner.sources[0].acked.next < 3:
            assert runner.cycle() or not runner.sources[0].attached, "nothing read from the torn segment"
        records = [r for batch in sink.batches for r in batch.records]
        assert [(r["type"], r["seq"], r["missed"], r["reason"]) for r in records] == [("gap", 3, 3, "book_unreadable")]
        assert runner.counters["dropped_with_gap"] == 3 and runner.counters["gaps"] == 1
    finally:
        runner.close()


def demo_writer(prefix: str, changes: int) -> tuple[int, int]:
    """One demo writer's whole life under `prefix` (it replaces the previous one): its epoch and the
    records it published."""
    demo.run(prefix, "demo", duration_s=60, rate=1e9, ring_slots=1 << 14, changes=changes)
    with Segment(prefix, "demo") as segment:
        return int(segment.header[Header.START_NS]), int(write_position(segment.ring_control))


def read_through(runner: SinkRunner, epoch: int, published: int) -> None:
    """Cycle until the sink acknowledged every record the writer of `epoch` published."""
    while (acked := runner.sources[0].acked) is None or (acked.epoch, acked.next) != (epoch, published):
        assert runner.cycle(), f"the sink stopped short of record {published} of writer {epoch}: at {acked}"


def delivered_and_missed(sink: KeepingSink) -> tuple[int, int, list[tuple]]:
    """Ring records the sink's batches read, records their gap records count, and those gaps."""
    gaps = [(r["missed"], r["reason"]) for batch in sink.batches for r in batch.records if r["type"] == "gap"]
    return sum(batch.read for batch in sink.batches), sum(missed for missed, _ in gaps), gaps


def test_a_writer_restarted_twice_before_the_sink_looks_is_one_gap_counting_the_writer_it_never_saw(
        shm_prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(source, "REATTACH_EVERY_S", 0.0)
    epoch, first = demo_writer(shm_prefix, 3000)
    sink = KeepingSink()
    runner = runner_of(shm_prefix, sink, tmp_path, batch_max=1000)
    try:
        read_through(runner, epoch, first)
        _, second = demo_writer(shm_prefix, 2000)  # published and replaced while the sink was not looking
        epoch, third = demo_writer(shm_prefix, 1000)
        read_through(runner, epoch, third)
        read, missed, gaps = delivered_and_missed(sink)
        assert gaps == [(second, "writer_restarted")]
        assert read + missed == first + second + third
    finally:
        runner.close()


def test_a_sink_restarted_after_its_writer_counts_the_unread_tail_of_the_old_writer_exactly(
        shm_prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(source, "REATTACH_EVERY_S", 0.0)
    _, first = demo_writer(shm_prefix, 3000)
    runner = runner_of(shm_prefix, KeepingSink(), tmp_path, batch_max=1000)
    runner.cycle()
    acked = runner.sources[0].acked.next
    assert 0 < acked < first
    runner.local.save({s.ring: s.acked for s in runner.sources}, force=True)
    runner.close()  # the sink stops with the first writer's tail unread; the writer restarts meanwhile
    epoch, second = demo_writer(shm_prefix, 1000)
    sink = KeepingSink()
    runner = runner_of(shm_prefix, sink, tmp_path, batch_max=1000)
    try:
        read_through(runner, epoch, second)
        read, missed, gaps = delivered_and_missed(sink)
        assert gaps == [(first - acked, "writer_restarted")]
        assert acked + read + missed == first + second
    finally:
        runner.close()


def test_positions_saved_before_lineages_resume_and_an_unknown_tail_is_minus_one():
    legacy = source.Position.from_json([1_700_000_000_000_000_000, 42])
    assert (legacy.epoch, legacy.next, legacy.lineage, legacy.base) == (1_700_000_000_000_000_000, 42, 0, 0)
    assert legacy.missed_before(lineage=5, base=100) == -1
    same = source.Position(7, 40, lineage=5, base=60)
    assert same.missed_before(lineage=5, base=130) == 30 and same.missed_before(lineage=6, base=130) == -1
