"""The aggregator process: every venue segment in, the NBBO segment `<prefix>.nbbo` out.

Venue segments are attached read-only as they appear, followed when a worker restarts (REPLACED),
and a venue whose heartbeat stops (or whose segment closes) is excluded from every NBBO until it is
back. "Stops" is measured on CLOCK_MONOTONIC (the segment's monotonic heartbeat), so a wall-clock
step cannot keep a silent venue in the NBBO nor drop a live one. The NBBO
segment's own heartbeat is written every HOUSEKEEPING_S whether anything changes or not. Symbols are the normalized symbols the venues carry (`BTC-USD` is not `BTC-USDT`, nor `BTC-USDT-PERP`;
an optional quote alias table merges quotes); each symbol's decimals are the finest of its venues', so every
venue's prices rescale exactly. Sizes are added across venues in the symbol's size unit (the instrument
table's size_ccy: the base asset, or the quote currency of inverse contracts, where base sizes would not
be exact): a venue counting contracts has its quantities multiplied by the contract's size, exactly. The hot path is one `aggregate` call per poll (feedhandler.nbbo).
Idle strategies: `spin` (a core of its own), `backoff` (spins briefly, then sleeps up to 1 ms) and
`block` (sleeps 1 ms between polls, least CPU). One aggregator per prefix: a second refuses to start.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import numpy as np

from feedhandler.config import RunConfig, VenueConfig
from feedhandler.nbbo import (AGGREGATOR_HOPS, V_REASON, V_UP, NbboOutput, VenueInputs, aggregate, new_state,
                              resync_venue, sweep)
from shm.jitcache import entry
from shm.latency import LatencyWriter
from shm.layout import RING_CONTROL_WORDS, SLOT_WORDS, Reason, State
from shm.reader import VenueReader
from shm.segment import InstrumentSpec, SegmentError, SegmentWriter

from .notify import Notifier
from .lifecycle import IdleWait, Stop
from .process import InstanceLock, apply_shm_access, compiled_first, pin, set_title, setup_logging
from .sink import start_in_thread

ATTACH_WAIT_S = 180.0  # how long the first start waits for every venue before fixing decimals
VENUE_STALE_S = 2.0  # a venue heartbeat older than this: the venue is down
HOUSEKEEPING_S = 0.1
MAX_VENUES = 16
# how long one aggregate call keeps polling: spin stays in numba (Python about once a millisecond),
# backoff polls 50 us before it starts sleeping, block polls once per wake-up
IDLE_BUDGET_NS = {"spin": 1_000_000, "backoff": 50_000, "block": 0}
# then sleeps (lifecycle.IdleWait): spin never; backoff 40 us doubling to 1 ms; block 1 ms
IDLE_SLEEPS_S = {"spin": (0.0, 0.0), "backoff": (40e-6, 1e-3), "block": (1e-3, 1e-3)}


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# what a venue that is not attached polls: an empty ring that never advances (read-only, like a
# real mapping, so every venue has the same numba type)
_NO_RING = _readonly(np.zeros((2, SLOT_WORDS), np.int64))
_NO_CONTROL = _readonly(np.zeros(RING_CONTROL_WORDS, np.int64))
_NO_BOOKS = _readonly(np.zeros((1, 64), np.int64))


class Aggregator:
    def __init__(self, config: RunConfig, log: logging.Logger | None = None):
        self.config = config
        self.settings = config.aggregator
        self.log = log or logging.getLogger("fh.aggregator")
        self.venues = sorted(config.venues)
        if len(self.venues) > MAX_VENUES:
            raise ValueError(f"at most {MAX_VENUES} venues")
        self.symbols = sorted({self._alias(s) for v in config.venues.values() for s in v.symbols}
                              if not self.settings.symbols else set(self.settings.symbols))
        self.readers: list[VenueReader | None] = [None] * len(self.venues)
        self.writer: SegmentWriter | None = None
        self.latency: LatencyWriter | None = None
        n_symbols, n_venues = len(self.symbols), len(self.venues)
        self.state = new_state(n_symbols, n_venues)
        self.state.venue_state[:, V_UP] = 0
        self.state.venue_state[:, V_REASON] = int(Reason.DISCONNECTED)
        self.cursors = np.zeros((n_venues, 2), np.int64)
        self.rows = np.zeros((256, SLOT_WORDS), np.int64)
        self.scratch = np.zeros(1, np.int64)
        self.route = np.full((n_venues, 1), -1, np.int64)
        self.scales = np.ones((n_venues, 1, 2), np.int64)
        # numba compiles the kernels once per length of these tuples: padded with placeholders to a power
        # of two, one compile serves 3-4 venues, one 5-8 (fh warmup compiles those two)
        width = tuple_width(n_venues)
        self._rings = [_NO_RING] * width
        self._controls = [_NO_CONTROL] * width
        self._books = [_NO_BOOKS] * width
        self.px_dec: dict[str, int] = {}
        self.qty_dec: dict[str, int] = {}  # decimals of the symbol's sizes, in its size unit
        self.size_ccy: dict[str, str] = {}
        self.polls = 0
        self.consumed = 0
        self.notifier = Notifier()

    def _alias(self, symbol: str) -> str:
        base, _, quote = symbol.partition("-")
        return f"{base}-{self.settings.quote_aliases.get(quote, quote)}"

    # ------------------------------------------------------------ attach
    def _try_attach(self, k: int) -> bool:
        venue = self.venues[k]
        try:
            reader = VenueReader(venue, prefix=self.config.prefix)
        except SegmentError:
            return False
        if not reader.segment.writer_alive(VENUE_STALE_S):
            reader.close()
            return False
        self.readers[k] = reader
        return True

    def start(self, wait_s: float = ATTACH_WAIT_S, stop: Stop | None = None) -> None:
        """Attach the venues (waiting up to `wait_s` for all of them), then create the NBBO segment
        with each symbol at the finest decimals of its venues; none (`writer` stays None) when `stop`
        came during the wait."""
        deadline = time.monotonic() + wait_s
        while True:
            for k in range(len(self.venues)):
                if self.readers[k] is None:
                    self._try_attach(k)
            missing = [v for v, r in zip(self.venues, self.readers) if r is None]
            if not missing or time.monotonic() >= deadline or (stop is not None and stop()):
                break
            time.sleep(0.2)
        if stop is not None and stop():
            return  # stopped while waiting: no NBBO segment replaces the last run's for a run that does not happen
        if missing:
            self.log.warning("starting without %s (not up after %.0f s); they join when they come", missing, wait_s)
        for reader in filter(None, self.readers):
            for inst in reader.instruments:
                symbol = self._alias(inst.symbol)
                self.px_dec[symbol] = max(self.px_dec.get(symbol, 0), inst.px_dec)
                self.qty_dec[symbol] = max(self.qty_dec.get(symbol, 0), inst.qty_dec + inst.size_dec)
                self.size_ccy.setdefault(symbol, inst.size_ccy)
        specs = [InstrumentSpec(s, s, self.px_dec.get(s, 8), min(18, self.qty_dec.get(s, 8)), len(self.venues),
                                self.size_ccy.get(s, "")) for s in self.symbols]
        self.writer = SegmentWriter.create(self.config.prefix, "nbbo", specs, depth=2 * len(self.venues),
                                           ring_slots=self.settings.ring_slots, labels=self.venues)
        self.latency = LatencyWriter(self.config.prefix, "aggregator",
                                     [(hop, venue) for venue in self.venues for hop in AGGREGATOR_HOPS])
        self._out = NbboOutput(self.writer.books, self.writer.ring, self.writer.ring_control, self.latency.hists)
        self._rebind()
        for k, reader in enumerate(self.readers):
            if reader is not None:
                self._bind(k, reader)

    def _bind(self, k: int, reader: VenueReader) -> None:
        """Route venue k's instruments to NBBO symbols, follow its ring from the live head and read
        its books as they are now."""
        n = len(reader.instruments)
        if n > self.route.shape[1]:
            width = n
            route = np.full((len(self.venues), width), -1, np.int64)
            route[:, :self.route.shape[1]] = self.route
            scales = np.ones((len(self.venues), width, 2), np.int64)
            scales[:, :self.scales.shape[1]] = self.scales
            self.route, self.scales = route, scales
        self.route[k] = -1
        index = {s: i for i, s in enumerate(self.symbols)}
        for inst in reader.instruments:
            symbol = index.get(self._alias(inst.symbol), -1)
            if symbol < 0:
                continue
            name = self.symbols[symbol]
            px_extra = self.px_dec.get(name, 8) - inst.px_dec
            qty_extra = min(18, self.qty_dec.get(name, 8)) - inst.qty_dec - inst.size_dec
            unit = self.size_ccy.setdefault(name, inst.size_ccy)
            if px_extra < 0 or qty_extra < 0 or inst.size_mant * 10 ** qty_extra >= 2 ** 63:
                self.log.error("%s %s: decimals %d/%d (size %de-%d) finer than the NBBO's; not aggregated (restart "
                               "the aggregator)", self.venues[k], inst.symbol, inst.px_dec, inst.qty_dec,
                               inst.size_mant, inst.size_dec)
                continue
            if inst.size_ccy != unit:
                self.log.error("%s %s: sizes in %r, the NBBO's in %r; not aggregated", self.venues[k], inst.symbol,
                               inst.size_ccy, unit)
                continue
            self.route[k, inst.index] = symbol
            self.scales[k, inst.index] = (10 ** px_extra, inst.size_mant * 10 ** qty_extra)
        segment = reader.segment
        self._rings[k], self._controls[k], self._books[k] = segment.ring, segment.ring_control, segment.books
        if len(self.scratch) < segment.geometry.block_words:
            self.scratch = np.zeros(segment.geometry.block_words, np.int64)
        self.cursors[k] = (reader.events().position, 0)
        self.state.venue_state[k] = (1, int(Reason.NONE))
        self._rebind()
        resync_venue(k, self._stale_ns, self._inputs, self.state, self._out)
        self.log.info("attached %s (pid %d, %d instruments)", self.venues[k], segment.writer_pid, n)

    @property
    def _stale_ns(self) -> int:
        return int(self.settings.stale_ms * 1_000_000)

    def housekeeping(self) -> None:
        """Heartbeat; venues down (stale heartbeat, closed, replaced) excluded; new writers attached."""
        self.writer.heartbeat()
        for k, reader in enumerate(self.readers):
            if reader is None:
                if self._try_attach(k):
                    self._bind(k, self.readers[k])
                continue
            segment = reader.segment
            if reader.replaced:
                self._venue_down(k, Reason.DISCONNECTED)
                self._detach(k)
            elif not segment.writer_alive(VENUE_STALE_S):
                reason = Reason.SHUTDOWN if segment.state == State.CLOSED else Reason.DISCONNECTED
                self._venue_down(k, reason)
                if segment.state == State.CLOSED:
                    self._detach(k)
            elif self.state.venue_state[k, V_UP] == 0:
                self.state.venue_state[k] = (1, int(Reason.NONE))
                self._resweep()

    def _venue_down(self, k: int, reason: Reason) -> None:
        if self.state.venue_state[k, V_UP]:
            self.log.warning("%s down (%s)", self.venues[k], reason.name.lower())
            self.state.venue_state[k] = (0, int(reason))
            self._resweep()

    def _detach(self, k: int) -> None:
        """Drop a venue's mapping; the next housekeeping attaches its new writer."""
        self._rings[k], self._controls[k], self._books[k] = _NO_RING, _NO_CONTROL, _NO_BOOKS
        self._rebind()
        self.readers[k].close()
        self.readers[k] = None

    def _resweep(self) -> None:
        sweep(time.monotonic_ns(), self._stale_ns, self.state, self._out)

    def _rebind(self) -> None:
        """The venue side of the kernels' arguments (see feedhandler.nbbo) as attached now, and
        aggregate's compiled entry for their types: built when a venue attaches or leaves, not on
        every poll (numba's dispatcher would type the nested tuples on each call)."""
        self._inputs = VenueInputs(tuple(self._rings), tuple(self._controls), tuple(self._books), self.cursors,
                                   self.route, self.scales, self.rows, self.scratch)
        self._aggregate = entry(aggregate, self._inputs, self.state, self._out, self._stale_ns, 0)

    def poll(self, budget_ns: int = 0) -> int:
        """One aggregate call over every venue, polling for `budget_ns`; returns the venue records
        consumed."""
        consumed = self._aggregate(self._inputs, self.state, self._out, self._stale_ns, budget_ns)
        self.polls += 1
        self.consumed += consumed
        return consumed

    def run(self, stop: Stop) -> None:
        budget_ns = IDLE_BUDGET_NS[self.settings.idle]
        wait = IdleWait(*IDLE_SLEEPS_S[self.settings.idle])
        next_housekeeping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_housekeeping:
                if stop():
                    break
                self.housekeeping()
                self.notifier.watchdog(now)
                next_housekeeping = now + HOUSEKEEPING_S
            if self.poll(budget_ns):
                wait.busy()
            else:
                wait.idle()

    def close(self) -> None:
        for k, reader in enumerate(self.readers):
            if reader is not None:
                self._detach(k)
        if self.writer is not None:
            self.writer.close()
        if self.latency is not None:
            self.latency.close()


def tuple_width(venues: int) -> int:
    """The length of the kernels' venue tuples for `venues` venues: the next power of two."""
    return 1 << (venues - 1).bit_length()


def warm(config: RunConfig, prefix: str) -> None:
    """The aggregator's kernels compiled for `config`'s venues (numba specializes them on
    tuple_width of how many), over empty venue segments and an NBBO segment under `prefix`, all
    removed after."""
    names = sorted(config.venues)
    quiet = replace(config, prefix=prefix, venues={name: VenueConfig(name, ("BTC-USD",), "", "") for name in names})
    writers = []
    log = logging.getLogger("fh.aggregator.warm")
    log.disabled = True  # its venues going down at the end is no news
    aggregator = Aggregator(quiet, log)
    try:
        for name in names:
            writers.append(SegmentWriter.create(prefix, name, [InstrumentSpec(name, "BTC-USD", 2, 8, 16)], 4, 16))
            writers[-1].heartbeat()
        aggregator.start(wait_s=0)
        aggregator.poll(10)
        aggregator.housekeeping()
    finally:
        made = [files.path for files in (aggregator.writer, aggregator.latency) if files is not None]
        aggregator.close()
        for path in made:
            os.unlink(path)
        for writer in writers:
            writer.close(unlink=True)


def main(config: RunConfig, duration_s: float | None = None) -> int:
    """Process entry point (`fh aggregator -c CONFIG`)."""
    log = setup_logging("fh.aggregator", config, process="aggregator")
    apply_shm_access(config)
    lock = InstanceLock(config.prefix, "aggregator")  # before anything of the running one is touched
    affinity = pin(config.aggregator.cpu)
    set_title(f"fh: aggregator [{config.prefix}]")
    compiled_first("aggregator", log, lambda prefix: warm(config, prefix))
    stop = Stop().on_signals()
    aggregator = Aggregator(config, log)
    sinks_stop = Stop()
    sinks = []
    try:
        aggregator.start(stop=stop)
        if aggregator.writer is None:
            log.info("stopped while starting")
            return 0
        log.info("NBBO of %d symbols over %s on CPUs %s (%s idle)", len(aggregator.symbols), aggregator.venues,
                 affinity, config.aggregator.idle)
        sinks = [start_in_thread(config, name, sinks_stop) for name, sink in config.sinks.items() if sink.in_aggregator]
        aggregator.notifier.ready(f"NBBO of {len(aggregator.symbols)} symbols over {', '.join(aggregator.venues)}")
        aggregator.run(stop.expire_after(duration_s))  # the duration counts from the NBBO running
        aggregator.notifier.stopping()
    except SegmentError as exc:
        log.error("%s", exc)
        return 2
    finally:
        sinks_stop.set()
        for thread in sinks:
            thread.join(10)
        aggregator.close()
        lock.close()
    log.info("stopped after %d polls, %d venue records", aggregator.polls, aggregator.consumed)
    return 0
