"""The lifecycle pieces every process shares: one backoff for anything retried (venue connections,
sink deliveries, child restarts), one pacer for anything rate-limited (messages and connections to
a venue), one idle wait for polling loops (aggregator, sinks) and one stop signal (every process).
Backoff and pacer are plain state machines over a clock the caller passes, so their rules are unit
tests without sleeps."""
from __future__ import annotations

import asyncio
import math
import random
import signal
import threading
import time
from collections.abc import Callable

from feedhandler.venues.base import Rate


class Backoff:
    """Capped exponential backoff with full jitter over the upper half: the n-th consecutive failure
    waits a random time in [c/2, c] with c = min(max_s, first_s * 2**n); a success starts over."""

    def __init__(self, first_s: float, max_s: float, rng: random.Random | None = None):
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def failed(self) -> float:
        """Record a failure; returns how long to wait before the next try."""
        ceiling = min(self.max_s, self.first_s * 2 ** min(self.failures, 30))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def succeeded(self) -> None:
        self.failures = 0


class Pacer:
    """Spaces events so that a documented `Rate` is never exceeded, even at the start of a window:
    each event takes the next slot at least `rate.interval_s` after the previous one."""

    def __init__(self, rate: Rate):
        self.rate = rate
        self._next = float("-inf")

    def reserve(self, now: float) -> float:
        """Take the next slot; returns how long to wait from `now` before the event may happen."""
        slot = max(now, self._next)
        self._next = slot + self.rate.interval_s
        return slot - now


class IdleWait:
    """What a polling loop does after a poll that found nothing: sleep, from `first_s` doubling up to
    `max_s` while nothing comes (0: never sleep, for a loop with a core of its own); a poll that
    found work starts over. Spinning before sleeping belongs to the poll itself (a numba budget)."""

    def __init__(self, first_s: float, max_s: float, sleep: Callable[[float], None] = time.sleep):
        self.first_s, self.max_s = first_s, max_s
        self._sleep = sleep
        self._quiet = 0

    def next_s(self) -> float:
        """How long the next idle wait lasts."""
        return min(self.max_s, self.first_s * 2 ** min(self._quiet, 30))

    def idle(self) -> None:
        wait = self.next_s()
        self._quiet += 1
        if wait > 0:
            self._sleep(wait)

    def busy(self) -> None:
        self._quiet = 0


class Stop:
    """The one stop signal of a process: set by SIGTERM / SIGINT once `on_signals()` installed it, by
    `set()`, or by a deadline (`expire_after`). `stop()` says whether it is set (any predicate can
    stand in for it), `await stop.wait()` waits for it in an event loop; threads share it as it is."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._deadline = math.inf

    def expire_after(self, duration_s: float | None) -> Stop:
        """Also set `duration_s` from now (None or 0: no deadline)."""
        self._deadline = time.monotonic() + duration_s if duration_s else math.inf
        return self

    def __call__(self) -> bool:
        return self._event.is_set() or time.monotonic() >= self._deadline

    def set(self, *_: object) -> None:
        self._event.set()

    def on_signals(self) -> Stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.set)
        return self

    async def wait(self, poll_s: float = 0.05) -> None:
        while not self():
            await asyncio.sleep(poll_s)
