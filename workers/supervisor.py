"""`fh run -c CONFIG`: the supervisor. Starts a worker process per configured venue and the aggregator
(each pins itself to its configured CPU), restarts a child that dies with capped exponential
backoff, and on SIGTERM / SIGINT (or after `--duration`) stops them all, the ring writers before their
readers: SIGTERM, then SIGKILL for a child still alive after the grace period; its summary's sink
figures are the sinks' final ones, once they drained the rings. A supervisor that dies without
stopping them (SIGKILL, OOM) takes them along: each child gets SIGTERM from the kernel when it dies
(PR_SET_PDEATHSIG). One supervisor per prefix: a second one refuses to start. Under systemd each
child is its own unit instead.
"""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from feedhandler.config import RunConfig
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.segment import SegmentError

from .lifecycle import Backoff, Stop
from .process import InstanceLock, apply_shm_access, die_with_parent, set_title, setup_logging

RESTART_FIRST_S, RESTART_MAX_S, HEALTHY_AFTER_S = 0.5, 30.0, 60.0
STOP_GRACE_S = 10.0
STOP_ORDER = ("venue", "aggregator", "sink")  # children's roles (their names' first word): writers before readers
READY_WAIT_S = 600.0  # a cold numba cache compiles for minutes on a small box
# the summary's `records`: each derivatives record kind and the venue counter (reader.totals()) counting it
RECORD_COUNTERS = {"funding": "fundings", "open_interest": "open_interests", "liquidation": "liquidations",
                   "bbo": "bbos"}


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_FIRST_S, RESTART_MAX_S))
    next_start: float = 0.0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, preexec_fn=die_with_parent())
        self.started = time.monotonic()


def children(config_path: str, config: RunConfig) -> list[Child]:
    fh = [sys.executable, "-m", "tools.cli"]
    kids = [Child(f"venue {v}", fh + ["worker", v, "-c", config_path]) for v in sorted(config.venues)]
    if config.aggregator.enabled:
        kids.append(Child("aggregator", fh + ["aggregator", "-c", config_path]))
    kids += [Child(f"sink {name}", fh + ["sink", name, "-c", config_path])
             for name, sink in sorted(config.sinks.items()) if not sink.in_aggregator or not config.aggregator.enabled]
    return kids


def summary(config: RunConfig, duration_s: float) -> dict:
    """What ran: per venue frames, books (valid now), book updates (each applied to a valid book and
    published), gaps and resyncs; the derivatives records published, summed over the venues; NBBO
    updates and symbols. The sinks' figures come once they stopped (`sink_stats`)."""
    venues = {}
    records = dict.fromkeys(RECORD_COUNTERS, 0)
    for venue in sorted(config.venues):
        try:
            with VenueReader(venue, prefix=config.prefix) as reader:
                totals = reader.totals()
                for kind, counter in RECORD_COUNTERS.items():
                    records[kind] += totals[counter]
                books = [reader.book(i.index, depth=1) for i in reader.instruments]
                venues[venue] = {"frames": totals["frames"], "valid_books": sum(b.valid for b in books),
                                 "books": len(books), "book_updates": totals["book_updates"], "gaps": totals["gaps"],
                                 "resyncs": totals["resyncs"]}
        except SegmentError:
            venues[venue] = {"frames": 0, "valid_books": 0, "books": 0, "book_updates": 0, "gaps": 0, "resyncs": 0}
    nbbo_updates, symbols = 0, []
    try:
        with NbboReader(prefix=config.prefix) as nbbo:
            symbols = [i.symbol for i in nbbo.instruments]
            nbbo_updates = sum(nbbo.quote(s).changes for s in symbols)
    except SegmentError:
        pass
    return {"duration_s": round(duration_s, 3), "venues": venues, "records": records, "nbbo_updates": nbbo_updates,
            "symbols": symbols}


def sink_stats(config: RunConfig) -> dict:
    """Each sink's stats file: its final figures once it stopped (delivered what the rings held, then wrote them)."""
    sinks = {}
    for name, sink in sorted(config.sinks.items()):
        try:
            sinks[name] = json.loads((Path(sink.state_dir) / f"{name}.stats.json").read_text())
        except (OSError, ValueError):
            sinks[name] = {"up": 0, "last_error": "no stats yet"}
    return sinks


def never_valid(config: RunConfig, result: dict) -> dict[str, str]:
    """The venues of a `summary` that had no valid book during the run (none valid at its end, and no
    update applied to a valid book before: the venue segment's counters since its writer started),
    each with what the counters tell: no frame at all, or frames but no book synced."""
    silent = {}
    for venue, figures in result["venues"].items():
        if not figures["valid_books"] and not figures["book_updates"]:
            silent[venue] = (f"{figures['frames']} frames, no book synced" if figures["frames"] else
                             f"no frame from {config.venues[venue].ws_url}")
    return silent


def nbbo_lines(config: RunConfig) -> list[str]:
    """One line per symbol: best bid / ask with the venues at each."""
    try:
        with NbboReader(prefix=config.prefix) as nbbo:
            lines = []
            for inst in nbbo.instruments:
                q = nbbo.quote(inst.index)
                flag = " LOCKED" if q.locked else " CROSSED" if q.crossed else ""
                lines.append(f"{inst.symbol:>10} {inst.qty_text(q.bid_qty):>14} @ {inst.price_text(q.bid_px):<14}"
                             f"{'+'.join(q.bid_venues):<18} | {inst.price_text(q.ask_px):>14} x "
                             f"{inst.qty_text(q.ask_qty):<14} {'+'.join(q.ask_venues)}{flag}")
            return lines
    except SegmentError as exc:
        return [f"(no NBBO yet: {exc})"]


def _ready(config: RunConfig) -> bool:
    names = list(config.venues) + (["nbbo"] if config.aggregator.enabled else [])
    for name in names:
        try:
            reader = NbboReader(prefix=config.prefix) if name == "nbbo" else VenueReader(name, prefix=config.prefix)
        except SegmentError:
            return False
        alive = reader.segment.writer_alive()
        reader.close()
        if not alive:
            return False
    return True


def run(config_path: str, config: RunConfig, duration_s: float | None = None, show_every_s: float = 5.0) -> dict:
    log = setup_logging("fh.run", config, process="supervisor")
    apply_shm_access(config)
    lock = InstanceLock(config.prefix, "run")
    set_title(f"fh: run {config_path}")
    stop = Stop().on_signals()
    kids = children(config_path, config)
    for child in kids:
        child.start()
        log.info("started %s (pid %d)", child.name, child.process.pid)
    began = time.monotonic()
    ready_at = None
    next_show = 0.0
    while not stop():
        time.sleep(0.2)
        now = time.monotonic()
        if ready_at is None and (_ready(config) or now - began > READY_WAIT_S):
            ready_at = now
            log.info("pipeline up after %.1f s", now - began)
        if ready_at is not None and duration_s and now - ready_at >= duration_s:
            break
        if ready_at is not None and now >= next_show:
            next_show = now + show_every_s
            for line in nbbo_lines(config):
                print(line, file=sys.stderr)
        for child in kids:
            code = child.process.poll() if child.process else None
            if child.process is not None and code is not None:
                child.exits.append(code)
                if now - child.started > HEALTHY_AFTER_S:
                    child.backoff.succeeded()
                delay = child.backoff.failed()
                log.warning("%s exited with %d; restarting in %.1f s", child.name, code, delay)
                child.process, child.next_start = None, now + delay
            elif child.process is None and now >= child.next_start:
                child.start()
                log.info("restarted %s (pid %d)", child.name, child.process.pid)
    ran = time.monotonic() - (ready_at or began)
    result = summary(config, ran)  # the books while their workers still run
    for child in kids:
        if child.exits:
            log.info("%s restarted %d time(s), exit codes %s", child.name, len(child.exits), child.exits)
    stop_children(kids, log)
    result["sinks"] = sink_stats(config)  # after the sinks drained the rings and wrote their final stats
    lock.close()
    return result


def stop_children(kids: list[Child], log: logging.Logger) -> None:
    """SIGTERM by role in STOP_ORDER, each once the role before has exited, so that the sinks find in
    the rings every record there will be, deliver it and write their final stats; SIGKILL for a child
    still alive after the grace period."""
    for role in STOP_ORDER:
        group = [child for child in kids if child.name.split()[0] == role and child.process is not None]
        for child in group:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in group:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE_S)
                child.process.kill()
                child.process.wait()
