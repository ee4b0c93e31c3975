"""The sink loop's contract, with a sink that acknowledges when told to (to order acknowledgements
and failures the way no real service can on demand): positions are committed only in batch order,
a failure sends every batch in flight again, and lingering gathers records into fewer deliveries."""
from __future__ import annotations

import os

import pytest

from feedhandler.config import SinkConfig
from shm.ring import write_position
from shm.segment import Segment
from tools import demo
from shm.latency import latency_path
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


def runner_of(prefix: str, sink: Sink, tmp_path, **settings) -> SinkRunner:
    config = SinkConfig("held", "unused", state_dir=str(tmp_path), snapshot_interval_s=0.0, **settings)
    runner = SinkRunner(sink, config, prefix, ["demo"])
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


def test_a_sink_that_cannot_start_leaves_no_latency_file(ring, tmp_path):
    with pytest.raises(SinkConfigError, match="schema refused"):
        runner_of(ring, MisconfiguredSink(in_flight=1), tmp_path)
    assert not os.path.exists(latency_path(ring, "sink-held"))
