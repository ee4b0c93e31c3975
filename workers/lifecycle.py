"""The lifecycle pieces every process shares: one backoff for anything retried (venue connections,
sink deliveries, child restarts) and one pacer for anything rate-limited (messages and connections
to a venue). Both are plain state machines over a clock the caller passes, so their rules are unit
tests without sleeps."""
from __future__ import annotations

import random

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
