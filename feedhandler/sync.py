"""Book sync: the per-book state machine words, the actions a venue step hands back to Python, and
the resync rate limit.

States, per book, held in the int64 `sync` array the numba steps read and write:

    CONNECTING -> BUFFERING -> SNAPSHOT -> BRIDGING -> LIVE -> RESYNC -> ...

CONNECTING: no subscription carries the book yet (or its connection dropped).
BUFFERING: diffs arrive and are kept (Binance) until a snapshot can bridge them.
SNAPSHOT: a snapshot is asked for (REST request in flight, or a (re)subscription sent).
BRIDGING: the snapshot is loaded; buffered diffs are being applied in order.
LIVE: every change is applied and published as valid.
RESYNC: invalidated (gap, checksum, crossed, disconnect): nothing is published as valid, and the
book waits, rate-limited, for a new snapshot.
Only BRIDGING and LIVE books take diffs; nothing is published valid before a verified snapshot.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class SyncState(IntEnum):
    CONNECTING = 0
    BUFFERING = 1
    SNAPSHOT = 2
    BRIDGING = 3
    LIVE = 4
    RESYNC = 5


CONNECTING = int(SyncState.CONNECTING)
BUFFERING = int(SyncState.BUFFERING)
SNAPSHOT = int(SyncState.SNAPSHOT)
BRIDGING = int(SyncState.BRIDGING)
LIVE = int(SyncState.LIVE)
RESYNC = int(SyncState.RESYNC)

# `sync` words, per book
SY_STATE = 0
SY_UPDATE_ID = 1  # last applied venue update id (Binance u), or the count of updates applied
SY_CONN = 2  # connection the book's frames arrive on (-1: none yet)
SY_DEPTH = 3  # subscribed depth to truncate to after every change (0: full depth)
SY_PX_PAD = 4  # Kraken v1: decimals the venue prints beyond the book's, for the checksum text
SY_QTY_PAD = 5
SY_TRADES = 6  # trades numbered for venues that give none an id
SY_NEXT_CONN = 7  # a rotation's new connection, which takes the book over once it lines up (-1: none)
SY_WORDS = 8

# `conn_state` words, per connection id (capture frames carry a u16 connection id)
CS_SEQUENCE = 0  # last sequence number seen (Coinbase Advanced), -1 before the first
CS_TIME_UNIT = 1  # ns per unit of the venue's integer timestamps on this connection (Binance ms or µs)
CS_WORDS = 2
DEFAULT_TIME_UNIT_NS = 1_000_000
MAX_CONNECTIONS = 1 << 16


class Action(IntEnum):
    """What a numba step asks of Python after a frame; DONE means the frame is fully handled."""

    DONE = 0
    BUFFER = 1  # Binance: the book is not bridged; keep this diff
    GAP = 2  # Binance: the book was invalidated by this diff's gap; it starts the new buffer
    ACK = 4  # Kraken v2 subscription ack: it names the book depth
    OTHER = 5  # a capture frame that is not a received WebSocket message (REST, connect, ...)


def new_sync(books: int) -> np.ndarray:
    """Sync words for `books` books, all CONNECTING on no connection."""
    sync = np.zeros((books, SY_WORDS), np.int64)
    sync[:, SY_CONN] = -1
    sync[:, SY_NEXT_CONN] = -1
    return sync


def new_conn_state() -> np.ndarray:
    conn_state = np.zeros((MAX_CONNECTIONS, CS_WORDS), np.int64)
    conn_state[:, CS_SEQUENCE] = -1
    conn_state[:, CS_TIME_UNIT] = DEFAULT_TIME_UNIT_NS
    return conn_state


class ResyncLimiter:
    """How often one book may ask for a snapshot: after a resync request the next one must wait
    `first_s`, doubling per request up to `max_s`; a request `reset_s` after the previous one starts
    over. Keeps a flapping book (or a venue in trouble) from a request storm and a ban."""

    def __init__(self, books: int, first_s: float = 0.5, max_s: float = 60.0, reset_s: float = 300.0):
        self.first_s, self.max_s, self.reset_s = first_s, max_s, reset_s
        self._last = [None] * books
        self._wait = [0.0] * books

    def allowed(self, book: int, now: float) -> bool:
        last = self._last[book]
        return last is None or now >= last + self._wait[book]

    def requested(self, book: int, now: float) -> None:
        """Record a snapshot request (REST fetch or resubscription) made at `now`."""
        last = self._last[book]
        if last is None or now - last >= self.reset_s:
            self._wait[book] = 0.0
        self._wait[book] = min(self.max_s, max(self.first_s, 2 * self._wait[book]))
        self._last[book] = now

    def last(self, book: int) -> float:
        """When the last request for this book was made (-inf: never)."""
        last = self._last[book]
        return float("-inf") if last is None else last

    def wait_s(self, book: int, now: float) -> float:
        last = self._last[book]
        return 0.0 if last is None else max(0.0, last + self._wait[book] - now)
