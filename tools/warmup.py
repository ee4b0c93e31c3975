"""`fh warmup`: compile every kernel the commands use into numba's on-disk cache ahead of them, so
that `fh run` (its workers, aggregator and sinks), `fh replay`, `fh demo`, `fh bench` and strategies
start hot. A cold cache takes minutes on a small box; a warm one makes this a few seconds.

The kernels come in groups: each venue protocol (driven through its simulator encoder the way its
worker drives it, feedhandler/warm.py), the NBBO aggregator, the demo writer, the reader API
(strategies, the sinks' ring reading, fh top), the sinks' encoders; then, once the protocols (and
the aggregator) are compiled, the replay loop, which calls every protocol's step, and the
benchmarks. Groups compile in parallel, in one process per CPU, each process taking the next group
it may start (the longest are listed first); numba's cache is safe to fill from several processes
(shm.jitcache serializes its saves). Progress: on a terminal a live line per group with its elapsed
time, otherwise a line per group as it starts and as it ends; then a summary. With a config
(`fh warmup -c CONFIG`, as `make run` does), only what `fh run` of it needs: a faster cold start.

Commands that would compile on first use call `load_kernels` with their kernels: they say so,
compile (or load) them before their work starts, and say how long it took, as the workers do.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import AsyncResult

import numpy as np
from numba.core import event

from feedhandler.config import RunConfig, VenueConfig
from feedhandler.venues import VENUES
from feedhandler.venues.base import Venue
from feedhandler.warm import drive
from shm.histogram import HIST_WORDS, record_many
from shm.reader import VenueReader
from shm.segment import InstrumentSpec, SegmentWriter

LOADING = "loading kernels (a cold numba cache compiles them for minutes; `fh warmup` does it ahead)"


def protocols() -> list[Venue]:
    """One venue per feed class: variants share their protocol's kernels."""
    return list({venue.feed: venue for venue in reversed(VENUES.values())}.values())[::-1]


def protocol(name: str, prefix: str) -> None:
    """A venue protocol's per-frame path, as its worker drives it before it goes live."""
    drive(VENUES[name], prefix, private=True).close()


def replay_loop(prefix: str, venue: str | None = None) -> None:
    """The batch loop of `fh replay` (every protocol's step; `venue`'s Python paths driven too)."""
    drive(VENUES[venue] if venue else protocols()[0], prefix, private=True, batch=True).close()


AGGREGATOR_WIDTHS = (4, 8)  # runs of 3-4 venues and of 5-8 (workers.aggregator.tuple_width)


def nbbo_aggregator(prefix: str) -> None:
    """The NBBO aggregator's kernels for runs of 3 to 8 venues (numba specializes them on the
    length of the venue tuples, which the aggregator pads to a power of two)."""
    from workers import aggregator
    for width in AGGREGATOR_WIDTHS:
        venues = {f"venue{k}": VenueConfig(f"venue{k}", ("BTC-USD",), "", "") for k in range(width)}
        aggregator.warm(RunConfig(venues=venues), prefix)


def reader_api(prefix: str) -> None:
    """The reader API's kernels as strategies, the sinks' ring reading, `fh top` and the replay
    summary call them: a book block read under its seqlock, the ring polled, prices formatted."""
    with SegmentWriter.create(prefix, "readers", [InstrumentSpec("WARM", "WARM-UP", 2, 8, 16)], 4, 16) as writer:
        try:
            with VenueReader("readers", prefix=prefix) as reader:
                reader.book(0).levels_text("bids")
                reader.events().poll()
                reader.instruments[0].price_text(1)
        finally:
            writer.close(unlink=True)


def sink_encoders(prefix: str) -> None:
    """The Kafka sink's msgpack encoder and every sink's latency histogram."""
    from workers.sinks.msgpack_maps import MapEncoder
    MapEncoder(("trade_id", "symbol")).encode({"trade_id": np.zeros(1, np.int64), "symbol": np.array(["X"], object)},
                                              {})
    record_many(np.zeros(HIST_WORDS, np.int64), np.zeros(1, np.int64))


def demo_writer(prefix: str) -> None:
    """The kernels `fh demo` (and `fh bench sinks`, which runs it) calls."""
    from . import demo
    demo.compile_kernels(prefix)


def benchmarks(prefix: str) -> None:
    """The kernels of `fh bench` book, shm, decode and nbbo (replay and sinks run the groups above)."""
    from .bench import book, decode, nbbo, shm
    for bench in (book, shm, decode, nbbo):
        bench.compile_kernels(prefix)


@dataclass(frozen=True)
class Group:
    """Kernels compiled together: `kernels(prefix)` compiles (or loads) them, segments it makes
    named under `prefix`; `after`: groups it needs compiled first."""

    name: str
    kernels: Callable[[str], object]
    after: tuple[str, ...] = ()


RUN_GROUPS = ("aggregator", "readers", "sinks")  # what `fh run` compiles besides its venues' protocols


def groups(config: RunConfig | None = None) -> list[Group]:
    """Every group, the longest to compile first (the order processes start in); for `config`, only
    those `fh run -c config` needs: its venues' protocols and RUN_GROUPS."""
    venues = [Group(venue.name, partial(protocol, venue.name)) for venue in protocols()]
    after_venues = tuple(group.name for group in venues)
    every = [*venues, Group("aggregator", nbbo_aggregator), Group("demo", demo_writer), Group("readers", reader_api),
             Group("sinks", sink_encoders), Group("replay", replay_loop, after_venues),
             Group("bench", benchmarks, (*after_venues, "aggregator"))]
    if config is None:
        return every
    feeds = {VENUES[name].feed for name in config.venues}
    wanted = {venue.name for venue in protocols() if venue.feed in feeds} | set(RUN_GROUPS)
    return [group for group in every if group.name in wanted]


def load_kernels(command: str, kernels: Callable[[str], object]) -> None:
    """Compile (or load) `kernels` in this process before `command` does its work, saying so on
    stderr as the workers do: compiling on first use would stall the work midway (a replay's rate,
    a demo that readers attach to) for minutes on a cold cache, with no word why."""
    print(f"{command}: {LOADING}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    kernels(f"fhwarm{os.getpid()}")
    print(f"{command}: kernels ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


class _Compiles(event.Listener):
    """Counts the kernels numba compiles in this process (a cache miss; loads are not events)."""

    count = 0

    def on_start(self, ev: event.Event) -> None:
        _Compiles.count += 1

    def on_end(self, ev: event.Event) -> None:
        pass


def _worker_start() -> None:
    """A compiling process counts its compiles and ignores Ctrl-C: the parent handles it by
    stopping them all."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    event.register("numba:compile", _Compiles())


def _compile(group: Group) -> int:
    """In a compiling process: the group's kernels into the cache (an error goes back to the
    parent); returns how many kernels it compiled (0: all were cached)."""
    before = _Compiles.count
    group.kernels(f"fhwarmup{os.getpid()}")
    return _Compiles.count - before


def _outcome(compiled: int | None) -> str:
    if compiled is None:
        return "FAILED"
    return f"{compiled} kernels compiled" if compiled else "cached"


def _needs(names: list[str]) -> str:
    return f"needs {', '.join(names)}, which failed"


class _Lines:
    """Progress as lines on stderr, one per group as it starts and as it ends (logs, pipes)."""

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def add(self, names: list[str]) -> None:
        pass

    def started(self, name: str) -> None:
        print(f"fh warmup: {name}: started", file=sys.stderr, flush=True)

    def finished(self, name: str, seconds: float, compiled: int | None) -> None:
        print(f"fh warmup: {name}: {'failed' if compiled is None else 'done'} in {seconds:.1f} s, {_outcome(compiled)}",
              file=sys.stderr, flush=True)

    def skipped(self, name: str, needs: list[str]) -> None:
        print(f"fh warmup: {name}: not started, {_needs(needs)}", file=sys.stderr, flush=True)

    def refresh(self) -> None:
        pass


class _Live:
    """Progress on a terminal: a line per group with a spinner, its state and elapsed time (rich)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        # refreshed by the scheduler, not by a thread of rich's: the pool forks its processes
        self.progress = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.description:<12}"),
                                 TimeElapsedColumn(), TextColumn("{task.fields[state]}"),
                                 console=Console(stderr=True), auto_refresh=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _Live:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.refresh()
        self.progress.stop()

    def add(self, names: list[str]) -> None:
        for name in names:
            self.tasks[name] = self.progress.add_task(name, total=1, start=False, state="[dim]waiting")

    def started(self, name: str) -> None:
        self.progress.start_task(self.tasks[name])
        self.progress.update(self.tasks[name], state="compiling or loading")

    def finished(self, name: str, seconds: float, compiled: int | None) -> None:
        state = f"[green]done[/], {_outcome(compiled)}" if compiled is not None else "[red]FAILED"
        self.progress.update(self.tasks[name], completed=1, state=state)
        self.progress.stop_task(self.tasks[name])

    def skipped(self, name: str, needs: list[str]) -> None:
        self.progress.update(self.tasks[name], state=f"[red]not started[/], {_needs(needs)}")

    def refresh(self) -> None:
        self.progress.refresh()


def run(jobs: int, todo: list[Group] | None = None) -> dict:
    """Compile every group (or those of `todo`) in `jobs` processes (each takes the next group it
    may start, so a process loads what an earlier group of its compiled instead of compiling it
    again); returns seconds per group, kernels compiled and seconds in all. A group that fails is
    reported with its error, the others still run (except those after it, which are named), and
    WarmupError is raised at the end."""
    todo = list(groups() if todo is None else todo)
    started = time.perf_counter()
    running: dict[str, tuple[AsyncResult, float]] = {}
    seconds: dict[str, float] = {}
    compiled = 0
    failed: list[str] = []
    # forked, no imports again: this process compiles nothing itself
    with multiprocessing.get_context("fork").Pool(jobs, _worker_start) as pool:
        try:
            with (_Live() if sys.stderr.isatty() else _Lines()) as progress:
                progress.add([group.name for group in todo])
                while todo or running:
                    for name, (result, since) in list(running.items()):
                        if result.ready():
                            del running[name]
                            seconds[name] = round(time.perf_counter() - since, 1)
                            if result.successful():
                                compiled += result.get()
                            else:
                                failed.append(name)
                                _report(name, result)
                            progress.finished(name, seconds[name], result.get() if result.successful() else None)
                    for group in [g for g in todo if set(g.after) & set(failed)]:
                        todo.remove(group)
                        failed.append(group.name)
                        progress.skipped(group.name, [name for name in group.after if name in failed])
                    ready = [g for g in todo if all(name in seconds for name in g.after)]
                    for group in ready[:max(0, jobs - len(running))]:
                        todo.remove(group)
                        running[group.name] = (pool.apply_async(_compile, (group,)), time.perf_counter())
                        progress.started(group.name)
                    progress.refresh()
                    time.sleep(0.05)
        except KeyboardInterrupt:
            pool.terminate()
            raise WarmupError(f"stopped; {len(set(seconds) - set(failed))} kernel groups were ready") from None
    total = round(time.perf_counter() - started, 1)
    print(f"fh warmup: {len(set(seconds) - set(failed))} kernel groups ready in {total:.1f} s ({jobs} processes), "
          f"{compiled} kernels compiled, the others loaded from the cache", file=sys.stderr)
    if failed:
        raise WarmupError(f"kernel groups failed: {', '.join(failed)}")
    return {"groups_s": seconds, "compiled": compiled, "jobs": jobs, "total_s": total}


def _report(name: str, result: AsyncResult) -> None:
    """A group's error, as its process raised it."""
    try:
        result.get()
    except Exception:
        import traceback
        print(f"fh warmup: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)


class WarmupError(RuntimeError):
    """Some kernel group did not compile, or the warmup was stopped."""
