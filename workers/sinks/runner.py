"""The loop every sink shares: read a batch from the rings, hand it to the service, and commit its ring
positions only once the service acknowledged it. A sink may keep a few batches in flight (Kafka:
the next batch is produced while the broker acknowledges the previous one); acknowledgements are
taken in order. While the service is down the same batches are retried, in order, with capped
jittered backoff (the rings are not read meanwhile: the workers never wait for a sink, and what fell
out of a ring by the time reading resumes arrives as one explicit gap record). Memory is bounded by
`batch_max` records times the batches in flight. One runner per sink name and prefix, in any process:
a second refuses to start (workers.process.InstanceLock), naming the pid of the first.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from feedhandler.config import SinkConfig
from shm.files import replace_file
from shm.histogram import HIST_WORDS, record_many, summary
from shm.latency import LatencyWriter
from shm.segment import shm_group

from ..lifecycle import Backoff, IdleWait
from ..process import InstanceLock
from .source import Batch, Position, RingSource

IDLE_SLEEP_S = 0.0005
STATS_EVERY_S = 1.0
SAVE_POSITIONS_EVERY_S = 0.1


class SinkDown(Exception):
    """The service cannot take the batch now (down, timed out, refused): retry later."""


class SinkConfigError(Exception):
    """A sink that cannot work as configured (bad URL, no rights on a topic, ...): fail at start."""


class Sink:
    """What a sink implements. The defaults are those of a sink whose send() waits for the service."""

    name: str
    keeps_positions: bool  # positions are stored by send() with the records, atomically
    in_flight = 1  # batches handed over before the oldest must be acknowledged

    def open(self) -> None:
        """Connect and prepare the schema; SinkConfigError for what retrying cannot fix, else SinkDown."""

    def load_positions(self) -> dict[str, Position] | None:
        """The positions the service holds (keeps_positions sinks), else None."""
        return None

    def stored_after(self, ring: str, position: Position) -> int | None:
        """Where the records of `position`'s writer that the service holds end, at or past
        `position.next` (None: it cannot say now). Asked when a restarted sink finds that writer gone:
        saved positions may lag what the service took (an acknowledgement lost with the sink), and
        what it holds is not missed. A sink that keeps its positions with its records has nothing to add."""
        return position.next

    def send(self, batch: Batch, positions: dict[str, Position]):
        """Hand `batch.records` and `batch.trades` to the service; returns a ticket for acknowledged().
        SinkDown when the service cannot take it."""
        raise NotImplementedError

    def acknowledged(self, ticket, wait: bool) -> int | None:
        """The commands or messages the batch of `ticket` took, once the service acknowledged it; None
        while it has not yet (only when not `wait`). SinkDown when it failed: every batch in flight
        is then sent again, in order."""
        return ticket

    def close(self) -> None:
        """Release the connection (pending acknowledgements are waited for by the runner, not here)."""


class LocalPositions:
    """Acknowledged positions in a JSON file, replaced atomically and durably (at-least-once sinks)."""

    def __init__(self, path: Path):
        self.path = path
        self._saved_at = 0.0

    def load(self) -> dict[str, Position]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SinkConfigError(f"{self.path}: unreadable sink positions ({exc}); remove it to start afresh")
        return {ring: Position.from_json(value) for ring, value in data.items()}

    def save(self, positions: dict[str, Position], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < SAVE_POSITIONS_EVERY_S:
            return
        self._saved_at = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, json.dumps({ring: p.to_json() for ring, p in positions.items()}).encode())


class SinkRunner:
    """Runs one sink over the rings of `rings` (venue names and `nbbo`) under `prefix`."""

    def __init__(self, sink: Sink, config: SinkConfig, prefix: str, rings: list[str], directory: str | None = None,
                 log: logging.Logger | None = None):
        self.sink, self.config = sink, config
        self.log = log or logging.getLogger(f"fh.sink.{config.name}")
        self.prefix, self.directory = prefix, directory
        self.sources = [RingSource(prefix, ring, directory, stored_after=sink.stored_after) for ring in rings]
        self._nbbo_source = next((s for s in self.sources if s.ring == "nbbo"), None)
        state = Path(config.state_dir)
        self.local = LocalPositions(state / f"{config.name}.positions.json")
        self.stats_path = state / f"{config.name}.stats.json"
        self.counters = {"sent": 0, "acked": 0, "retried": 0, "dropped_with_gap": 0, "gaps": 0, "conflated": 0,
                         "batches": 0, "lag": 0, "commands": 0, "up": 0}
        self.last_error = ""
        self._latency_file: LatencyWriter | None = None
        self._instance: InstanceLock | None = None
        self.latency = np.zeros(HIST_WORDS, np.int64)  # publish -> acknowledged, ns; in shm once started
        self._backoff = Backoff(0.1, self.config.retry_max_s)  # its count is the failures in a row
        self._idle = IdleWait(IDLE_SLEEP_S, IDLE_SLEEP_S)
        self._retry_at = 0.0
        self._opened = False
        self._in_flight: deque[list] = deque()  # [batch, positions, ticket] handed over, not yet acknowledged
        self._send_again = False  # the batches in flight failed: send them again before anything new
        self._next_snapshot = time.monotonic() + config.snapshot_interval_s
        self._next_stats = 0.0
        self._linger_until = 0.0
        self._draining = False

    def start(self) -> None:
        """Take the sink's instance lock (InstanceLockError: another runs), open the sink and load the
        positions to resume from. SinkConfigError propagates, and the sink's latency file and lock,
        taken for a run that does not happen, are released."""
        if self._instance is None:
            self._instance = InstanceLock(self.prefix, f"sink-{self.config.name}", self.directory)
        if self._latency_file is None:
            self._latency_file = LatencyWriter(self.prefix, f"sink-{self.config.name}", [("sink", self.config.name)],
                                               self.directory)
            self.latency = self._latency_file.hists[0]
        try:
            self.sink.open()
            self._opened = True
        except SinkDown as exc:
            self._failed(exc)
        except SinkConfigError:
            self._latency_file.close(unlink=True)
            self._latency_file = None
            self._instance.close()
            self._instance = None
            raise
        saved = (self.sink.load_positions() if self._opened and self.sink.keeps_positions else None)
        if saved is None:
            saved = self.local.load()
        for source in self.sources:
            source.resume_from(saved.get(source.ring))
        self.log.info("%s sink: resuming %s", self.config.name,
                      {ring: p.to_json() for ring, p in saved.items()} or "from the oldest records in each ring")

    def cycle(self) -> int:
        """One round: hand over the next batch if there is room, take the acknowledgements that came;
        returns the ring records handed over or acknowledged (0: idle or retrying)."""
        now = time.monotonic()
        if now < self._retry_at:
            return 0
        if not self._opened:
            try:
                self.sink.open()
                self._opened = True
                if self.sink.keeps_positions:
                    saved = self.sink.load_positions() or {}
                    for source in self.sources:
                        source.resume_from(saved.get(source.ring, source.acked))
            except SinkDown as exc:
                self._failed(exc)
                return 0
        if self._send_again:
            try:
                for entry in self._in_flight:
                    entry[2] = self.sink.send(entry[0], entry[1])
            except SinkDown as exc:
                self._failed(exc)
                return 0
            self._send_again = False
        progress = 0
        if len(self._in_flight) < self.sink.in_flight and (read := self._read(now)) is not None:
            batch, positions = read
            self.counters["sent"] += batch.size
            progress += batch.read
            entry = [batch, positions, None]
            self._in_flight.append(entry)
            try:
                entry[2] = self.sink.send(batch, positions)
            except SinkDown as exc:
                self._send_again = True
                self._failed(exc)
                return progress
        return progress + self._acknowledge(wait_for_one=progress == 0)

    def _acknowledge(self, wait_for_one: bool) -> int:
        """Commit the batches the service acknowledged, oldest first; wait for the oldest when no more
        may be in flight, or when `wait_for_one` (nothing else to do). Returns their ring records."""
        done = 0
        while self._in_flight:
            batch, positions, ticket = self._in_flight[0]
            wait = wait_for_one or len(self._in_flight) >= self.sink.in_flight
            try:
                commands = self.sink.acknowledged(ticket, wait)
            except SinkDown as exc:
                self._send_again = True
                self._failed(exc)
                return done
            if commands is None:
                return done
            self._in_flight.popleft()
            wait_for_one = False
            self.counters["commands"] += commands
            record_many(self.latency, time.time_ns() - batch.publish_stamps())
            for source in self.sources:
                source.commit(positions.get(source.ring))
            if not self.sink.keeps_positions:
                self.local.save(positions)
            self._delivered(batch)
            done += batch.read
        return done

    def _read(self, now: float) -> tuple[Batch, dict[str, Position]] | None:
        """The next batch from the rings: up to batch_max records, books conflated. Within linger_s of
        the last one, only once batch_max records are there (not when draining)."""
        if now < self._linger_until and not self._draining and \
                sum(source.lag() for source in self.sources) < self.config.batch_max:
            return None
        batch = Batch(self.config.depth, self._nbbo_source)
        budget = self.config.batch_max
        first = self.counters["batches"] % len(self.sources)  # rotate, so no busy ring starves the others
        for source in self.sources[first:] + self.sources[:first]:
            budget -= source.read(batch, budget)
            if budget <= 0:
                break
        if self.config.snapshot_interval_s and now >= self._next_snapshot:
            self._next_snapshot = now + self.config.snapshot_interval_s
            for source in self.sources:
                source.snapshots(batch)
        batch.close()
        if not batch.size:
            return None
        self._linger_until = now + self.config.linger_s
        return batch, {s.ring: s.position() for s in self.sources if s.position() is not None}

    def forget_latency(self) -> None:
        """Start the publish -> acknowledged histogram afresh, e.g. after a warm-up that read a backlog."""
        self.latency[:] = 0

    def latency_percentiles(self) -> dict[str, float]:
        """p50 / p99 of publish -> acknowledged since the start (µs)."""
        figures = summary(self.latency, (50, 99))
        if not figures["count"]:
            return {}
        return {"visible_p50_us": round(figures["p50_ns"] / 1e3, 1), "visible_p99_us": round(figures["p99_ns"] / 1e3, 1)}

    def _delivered(self, batch: Batch) -> None:
        failures = self._backoff.failures
        if failures:
            self.log.warning("%s sink: delivering again after %d failed attempts", self.config.name, failures)
        self._backoff.succeeded()
        self.counters["up"] = 1
        self.last_error = ""  # it is up again: the error is history (the log keeps it)
        self.counters["acked"] += batch.size
        self.counters["batches"] += 1
        self.counters["conflated"] += batch.conflated
        self.counters["dropped_with_gap"] += batch.missed
        self.counters["gaps"] += sum(1 for r in batch.records if r["type"] == "gap")

    def _failed(self, exc: Exception) -> None:
        self.counters["retried"] += 1
        self.counters["up"] = 0
        self.last_error = str(exc)
        delay = self._backoff.failed()
        self._retry_at = time.monotonic() + delay
        failures = self._backoff.failures
        if failures == 1 or failures % 20 == 0:
            self.log.warning("%s sink: %s (attempt %d, next in %.2f s)", self.config.name, exc, failures, delay)

    def stats(self) -> dict:
        self.counters["lag"] = sum(source.lag() for source in self.sources)
        return {"sink": self.config.name, **self.counters, **self.latency_percentiles(), "last_error": self.last_error,
                "positions": {s.ring: s.acked.to_json() for s in self.sources if s.acked is not None}}

    def write_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_stats:
            self._next_stats = now + STATS_EVERY_S
            self.stats_path.parent.mkdir(parents=True, exist_ok=True)
            # readable by fh metrics where it runs in the shm group
            replace_file(self.stats_path, json.dumps(self.stats()).encode(), shm_group())

    def run(self, stop: Callable[[], bool], pace: Callable[[int], float] | None = None,
            alive: Callable[[], object] | None = None) -> dict:
        """Start, follow the rings until `stop()`, deliver what is left, close; the final stats."""
        self.start()
        try:
            self.follow(stop, pace, alive)
            self.drain()
        finally:
            self.write_stats(force=True)
            self.close()
        return self.stats()

    def follow(self, stop: Callable[[], bool], pace: Callable[[int], float] | None = None,
               alive: Callable[[], object] | None = None) -> None:
        """Cycle until `stop()`; `pace(commands)` may ask for a pause after a delivery (rate limits);
        `alive()` is called every round (systemd's watchdog)."""
        while not stop():
            if alive is not None:
                alive()
            before = self.counters["commands"]
            if self.cycle() == 0:
                self._idle.idle()
            else:
                self._idle.busy()
                if pace is not None:
                    time.sleep(pace(self.counters["commands"] - before))
            self.write_stats()

    def close(self) -> None:
        """Detach from the rings, close the sink and the latency file."""
        for source in self.sources:
            source.close()
        self.sink.close()
        if self._latency_file is not None:
            self.latency = np.array(self.latency)  # stats() may still read it
            self._latency_file.close()
            self._latency_file = None
        if self._instance is not None:
            self._instance.close()
            self._instance = None

    def drain(self, timeout_s: float = 5.0) -> None:
        """At shutdown: deliver what the rings hold now, while the service takes it."""
        deadline = time.monotonic() + timeout_s
        self._draining = True
        while time.monotonic() < deadline and self._backoff.failures == 0 and self.cycle():
            pass
        if not self.sink.keeps_positions:
            self.local.save({s.ring: s.acked for s in self.sources if s.acked is not None}, force=True)
