"""What the simulator's venue encoders share: a step's changes collapsed per level, the changes of a
client's view at a subscribed depth, decimals as the shortest text, RFC 3339 stamps with nanoseconds."""
from __future__ import annotations

import time

from shm.fixedpoint import format_decimal

from ..sim_market import ASK, BID, Market, Step


def collapsed(step: Step) -> dict[tuple[int, int], int]:
    """The last quantity of every (side, price) a step touched, in first-touched order."""
    last: dict[tuple[int, int], int] = {}
    for side, price, qty in step.changes:
        last[(side, price)] = qty
    return last


def view_changes(view: tuple[dict[int, int], dict[int, int]], market: Market,
                 depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(bid, ask) changes that bring a client's view of the top `depth` levels (bids, asks: price ->
    qty, updated in place) to the market's: levels entering scope included, levels leaving it as
    quantity 0."""
    changed = []
    for side in (BID, ASK):
        new = dict(market.top(side, depth))
        old = view[side]
        changed.append([(p, q) for p, q in new.items() if old.get(p) != q] + [(p, 0) for p in old if p not in new])
        old.clear()
        old.update(new)
    return changed[BID], changed[ASK]


def wire(value: int, decimals: int) -> str:
    """A mantissa as OKX and Bybit print it: the shortest decimal ("30261", "0.0013275")."""
    text = format_decimal(value, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def rfc3339(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
