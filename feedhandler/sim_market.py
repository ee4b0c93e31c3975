"""The simulator's synthetic market: one symbol's L2 book driven by a seeded random order flow.

Prices are integer ticks and sizes integer lots (the symbol's decimals), so venue encoders print them
exactly. Each step: the mid may drift a tick (random walk), a Poisson number of limit orders and
cancels land at geometric depth from the touch, and sometimes a market order consumes the touch and
prints trades. Adds never cross the other side, so the book is never crossed; each side keeps at
most `max_levels` levels (the farthest are removed, as a venue's depth limit would).

A step may be given bounds: the highest bid and the lowest ask it may add. That is how the simulator
keeps several venues' markets from crossing each other (arbitrage): only an add can move a touch
toward the other side, so a book whose touch is within the bounds stays within them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BID = 0
ASK = 1


@dataclass(frozen=True)
class Trade:
    price: int
    qty: int
    aggressor: int  # +1 buy, -1 sell


@dataclass
class Step:
    """What one step changed: (side, price, qty after) per touched level, qty 0 = removed; trades."""

    changes: list[tuple[int, int, int]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)


class Market:
    def __init__(self, mid: int, seed: int = 1, max_levels: int = 200, orders_per_step: float = 3.0,
                 trade_probability: float = 0.1, drift_probability: float = 0.2, mean_depth: float = 6.0,
                 mean_lots: int = 50_000_000):
        if mid < 2 * max_levels:
            raise ValueError(f"mid {mid} ticks is too close to zero for {max_levels} levels a side")
        self.rng = np.random.default_rng(seed)
        self.max_levels = max_levels
        self.orders_per_step = orders_per_step
        self.trade_probability = trade_probability
        self.drift_probability = drift_probability
        self.mean_depth = mean_depth
        self.mean_lots = mean_lots
        self._bounds: tuple[int, int] | None = None  # the current step's (highest bid, lowest ask)
        self.sides: tuple[dict[int, int], dict[int, int]] = ({}, {})
        for depth in range(1, max_levels // 2 + 1):
            self.sides[BID][mid - depth] = self._lots()
            self.sides[ASK][mid + depth] = self._lots()

    def best(self, side: int) -> int:
        levels = self.sides[side]
        return max(levels) if side == BID else min(levels)

    def top(self, side: int, depth: int) -> list[tuple[int, int]]:
        """Best-first (price, qty) of one side."""
        prices = sorted(self.sides[side], reverse=side == BID)[:depth]
        return [(p, self.sides[side][p]) for p in prices]

    def mid(self) -> int:
        return (self.best(BID) + self.best(ASK)) // 2

    def step(self, target: int | None = None, bounds: tuple[int, int] | None = None) -> Step:
        """One step of order flow; with a `target` mid (ticks) the drift leans toward it, which is how
        several venues' markets follow one reference price; with `bounds` (highest bid, lowest ask, in
        ticks) no order is added through them."""
        step = Step()
        self._bounds = bounds
        if self.rng.random() < self.drift_probability:  # the mid moves: one side's touch is taken away
            up = self.rng.random() < 0.5
            if target is not None and abs(target - self.mid()) > 1 and self.rng.random() < 0.8:
                up = target > self.mid()
            self._sweep(step, ASK if up else BID, None)
            self._add(step, BID if up else ASK, 0)  # the other side follows the move
        for _ in range(self.rng.poisson(self.orders_per_step)):
            side = BID if self.rng.random() < 0.5 else ASK
            depth = int(self.rng.geometric(1.0 / self.mean_depth)) - 1
            if self.rng.random() < 0.6:
                self._add(step, side, depth)
            else:
                self._cancel(step, side, depth)
        if self.rng.random() < self.trade_probability:
            self._market_order(step)
        return step

    # ---------------------------------------------------------------- order flow

    def _lots(self) -> int:
        return max(1, int(self.rng.lognormal(np.log(self.mean_lots), 1.0)))

    def _set(self, step: Step, side: int, price: int, qty: int) -> None:
        levels = self.sides[side]
        if qty > 0:
            levels[price] = qty
        else:
            levels.pop(price, None)
        step.changes.append((side, price, qty))

    def _add(self, step: Step, side: int, depth: int) -> None:
        """A limit order `depth` ticks behind the touch (or improving it by a tick at depth 0),
        never at or through the other side."""
        sign = -1 if side == BID else 1
        touch = self.best(side)
        price = touch + sign * depth if depth > 0 else touch - sign
        other = self.best(1 - side)
        if (side == BID and price >= other) or (side == ASK and price <= other):
            price = other + sign
        if self._bounds is not None:
            price = min(price, self._bounds[BID]) if side == BID else max(price, self._bounds[ASK])
        self._set(step, side, price, self.sides[side].get(price, 0) + self._lots())
        levels = self.sides[side]
        while len(levels) > self.max_levels:
            self._set(step, side, min(levels) if side == BID else max(levels), 0)

    def _cancel(self, step: Step, side: int, depth: int) -> None:
        prices = sorted(self.sides[side], reverse=side == BID)
        if len(prices) <= 1:
            return
        price = prices[min(depth, len(prices) - 1)]
        qty = self.sides[side][price]
        left = 0 if self.rng.random() < 0.5 else qty // 2
        self._set(step, side, price, left)

    def _market_order(self, step: Step) -> None:
        """A market order consumes the touch of one side, possibly several levels."""
        side = BID if self.rng.random() < 0.5 else ASK  # the side it hits
        self._sweep(step, side, self._lots() * 2)

    def _sweep(self, step: Step, side: int, lots: int | None) -> None:
        """Take `lots` from the touch of `side` (None: the whole touch level), printing trades."""
        levels = self.sides[side]
        aggressor = -1 if side == BID else 1  # hitting bids is selling
        remaining = levels[self.best(side)] if lots is None else lots
        while remaining > 0 and len(levels) > 1:
            price = self.best(side)
            taken = min(remaining, levels[price])
            step.trades.append(Trade(price, taken, aggressor))
            self._set(step, side, price, levels[price] - taken)
            remaining -= taken
