"""What the simulator's venue encoders share: a step's changes collapsed per level, RFC 3339 stamps
with nanoseconds."""
from __future__ import annotations

import time

from ..sim_market import Step


def collapsed(step: Step) -> dict[tuple[int, int], int]:
    """The last quantity of every (side, price) a step touched, in first-touched order."""
    last: dict[tuple[int, int], int] = {}
    for side, price, qty in step.changes:
        last[(side, price)] = qty
    return last


def rfc3339(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
