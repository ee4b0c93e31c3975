"""Helpers for the sink tests: a replayed venue segment as deterministic input, the reference records
read straight from the rings, running a sink until it caught up, and reading back what it delivered."""
from __future__ import annotations

import time
from pathlib import Path

import msgpack
from confluent_kafka import Consumer, TopicPartition

from feedhandler.config import RunConfig, parse_config
from shm.layout import Header
from shm.nbbo_reader import NbboEvent, NbboReader, VenueStatusEvent
from shm.reader import BookEvent, GapEvent, StatusEvent, TradeEvent, VenueReader
from tools.importers.cryptofeed import import_recordings
from tools.replay import replay
from workers.sinks import make_runner
from workers.sinks.kafka import PARTITIONS

COINBASE_2021 = "coinbase-exchange-2021/COINBASE"


def replayed(captures: Path, tmp_path: Path, prefix: str) -> str:
    """The Coinbase 2021 recording replayed into `<prefix>.coinbase`, left in place; returns the venue."""
    capture = tmp_path / "coinbase.fhcap"
    import_recordings([str(captures / COINBASE_2021)], str(capture))
    replay([str(capture)], shm_prefix=prefix, keep=True)
    return "coinbase"


def sink_settings(tmp_path: Path, **settings) -> dict:
    """A [sinks.NAME] table: state under tmp_path, no periodic snapshots, `settings`."""
    return {"state_dir": str(tmp_path / "state"), "snapshot_interval_s": 0, **settings}


def run_config(prefix: str, venues: list[str], sinks: dict[str, dict], aggregator: bool = False) -> RunConfig:
    return parse_config({"run": {"prefix": prefix}, "aggregator": {"enabled": aggregator},
                         "venues": {v: {"symbols": ["BTC-USD"]} for v in venues}, "sinks": sinks})


class Reference:
    """Every record of a ring, read from its oldest position, keyed as the sinks key them. `small`:
    the ring is small enough for the writer to overwrite its oldest records while they are read;
    what was read before that is left out."""

    def __init__(self, prefix: str, ring: str, small: bool = False):
        reader = NbboReader(prefix) if ring == "nbbo" else VenueReader(ring, prefix)
        with reader:
            self.epoch = int(reader.segment.header[Header.START_NS])
            cursor = reader.events("oldest", batch=1 << 16)
            self.events = []
            while batch := cursor.poll():
                self.events.extend(batch)
        lapped = [k for k, e in enumerate(self.events) if isinstance(e, GapEvent)]
        assert small or not lapped, "reference lapped: make the run shorter"
        self.events = self.events[lapped[-1] + 1:] if lapped else self.events
        self.ring = ring
        self.head = cursor.position

    def keys(self, *kinds: type) -> set[tuple[str, int, int]]:
        return {(self.ring, self.epoch, e.position) for e in self.events if isinstance(e, kinds)}

    def trades(self) -> list[TradeEvent]:
        return [e for e in self.events if isinstance(e, TradeEvent)]

    def last_book_change(self) -> dict[str, int]:
        """symbol -> ring position of its last book change."""
        return {e.instrument.symbol: e.position for e in self.events if isinstance(e, BookEvent)}

    def one_for_one(self) -> set[tuple[str, int, int]]:
        """Keys of the records every sink delivers one for one (not conflated)."""
        return self.keys(TradeEvent, StatusEvent, NbboEvent, VenueStatusEvent)


def run_sink_until(run: RunConfig, name: str, caught_up, timeout_s: float = 60.0):
    """Run the sink `name` in this process until `caught_up(runner)`; returns the runner, stopped."""
    runner, pace = make_runner(run, name)
    deadline = time.monotonic() + timeout_s
    runner.run(lambda: caught_up(runner) or time.monotonic() > deadline, pace)
    return runner


def at_heads(*references: Reference):
    """A caught_up test: the runner acknowledged every ring up to the references' heads."""
    heads = {ref.ring: (ref.epoch, ref.head) for ref in references}

    def caught_up(runner) -> bool:
        acked = {s.ring: s.acked for s in runner.sources}
        return all(acked.get(ring) is not None and (acked[ring].epoch, acked[ring].next) >= head
                   for ring, head in heads.items())
    return caught_up


def consume_all(bootstrap: str, topics: list[str], quiet_s: float = 3.0, enough=None,
                timeout_s: float = 120.0) -> list[tuple[str, bytes, dict]]:
    """Every message of `topics` from the start, as (topic, key, record), read until quiet (Tansu's
    watermarks cannot be trusted), or until `enough(records)` for a topic still being written;
    partitions assigned directly, no group join."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fh-test", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while messages := consumer.consume(10_000, timeout=quiet_s):
            for message in messages:
                assert message.error() is None, message.error()
                out.append((message.topic(), message.key(), msgpack.unpackb(message.value())))
            if enough is not None and enough([record for _, _, record in out]) or time.monotonic() > deadline:
                break
    finally:
        consumer.close()
    return out


def delivered_keys(records: list[dict], *types: str) -> list[tuple[str, int, int]]:
    return [(r["ring"], r["epoch"], r["seq"]) for r in records if r["type"] in types]
