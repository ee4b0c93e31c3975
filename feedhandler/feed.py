"""A venue feed: frames in, books and events out to the venue's shared-memory segment.

The same object serves a live worker (frames from sockets, snapshots it fetches when asked) and a
replay (batches of frames from a capture), so both take exactly the same decode and book path.
Each received frame is one numba call (the venue's `step`: decode, sequence check, apply, settle,
publish); Python runs only when the step hands back an Action (a diff to buffer, a snapshot to load,
a subscription ack) and for the per-book sync lifecycle (see `feedhandler.sync`).
Kraken and Coinbase snapshots come on the socket and load inside the step; Binance's come by REST.
"""
from __future__ import annotations

import json
import time
from collections import deque
from urllib.parse import parse_qs, urlparse

import numpy as np

from shm.histogram import HIST_WORDS
from shm.layout import Counter, Reason, Status
from shm.segment import SegmentWriter

from .book import BookStore
from .capture import FrameBatch, FrameKind, split_rest
from .feed_kernels import (NO_CHECKSUM, ROW_PRICE, ROW_QTY, ROW_SIDE, SCRATCH_ROWS, TABLE_ROWS, T_LENGTH, T_PX_DEC,
                           T_QTY_DEC, invalidate, load_snapshot, settle, status)
from .instruments import Instrument
from .jsonscan import symbol_table
from .publish import VENUE_HOPS, mark_decoded
from .steps import BINANCE, COINBASE, KRAKEN, STEPS, run_frames
from .sync import (BRIDGING, BUFFERING, CONNECTING, CS_SEQUENCE, LIVE, RESYNC, SNAPSHOT, SY_CONN, SY_DEPTH, SY_STATE,
                   SY_UPDATE_ID, Action, ResyncLimiter, SyncState, new_conn_state, new_sync)
from .venues import binance, coinbase

INITIAL_LEVELS = 20_000
HEADER_WORDS = 16


class VenueFeed:
    """What every venue feed shares: the instrument table as decoder arrays, the books, the sync
    words, the scratch arrays a decoder fills, and the Python side of the sync machine."""

    VENUE = -1
    WAITING = RESYNC  # the state of a book that needs a snapshot it has not asked for yet
    CAPACITY = 8192  # default run rows per book side; the segment's instrument table records it
    clock = staticmethod(time.monotonic)  # seconds, for the resync rate limit

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None):
        """`latency`: the histogram rows of publish.VENUE_HOPS, in shared memory (shm.latency) when
        someone reads them; a private array otherwise."""
        self.instruments = instruments
        self.writer = writer
        self.latency = latency if latency is not None else np.zeros((len(VENUE_HOPS), HIST_WORDS), np.int64)
        self.books = BookStore([capacity or self.CAPACITY] * len(instruments))
        self.sync = new_sync(len(instruments))
        self.conn_state = new_conn_state()
        self.limiter = ResyncLimiter(len(instruments))
        self.counters = writer.counters
        self._index = {inst.venue_symbol: i for i, inst in enumerate(instruments)}
        self._step = STEPS[self.VENUE]
        self._symbols, lengths = symbol_table([inst.venue_symbol for inst in instruments])
        self._tables = np.zeros((TABLE_ROWS, len(instruments)), np.int64)
        self._tables[T_LENGTH] = lengths
        self._tables[T_PX_DEC] = [inst.px_dec for inst in instruments]
        self._tables[T_QTY_DEC] = [inst.qty_dec for inst in instruments]
        self._header = np.zeros(HEADER_WORDS, np.int64)
        self._events = np.zeros((coinbase.MAX_EVENTS, coinbase.EVENT_WORDS), np.int64)
        self._scratch = np.zeros((SCRATCH_ROWS, 0), np.int64)
        self._scratch_bytes = -1  # the largest frame the scratch rows can take
        self._fit_scratch(INITIAL_LEVELS * 8)

    def _fit_scratch(self, frame_bytes: int) -> None:
        """Size the scratch rows for frames up to `frame_bytes`: a level takes at least 8 bytes of
        JSON, so a frame never holds more than len/8 of them (Coinbase snapshots carry ~46k)."""
        if frame_bytes <= self._scratch_bytes:
            return
        levels = max(frame_bytes // 8 + 32, 2 * self._scratch.shape[1])
        self._scratch = np.zeros((SCRATCH_ROWS, levels), np.int64)
        self._scratch_bytes = 8 * (levels - 32)
        books, writer = self.books, self.writer
        self._kernel_args = (self._symbols, self._tables, self._scratch, self._header, self._events, self.sync,
                             self.conn_state, books.levels, books.ladder, books.meta, writer.books, writer.ring,
                             writer.ring_control, writer.counters, self.latency)

    # ---------------------------------------------------------------- frames in

    def on_frame(self, payload: bytes, ts_recv: int, conn: int = 0) -> None:
        """One received WebSocket message. The step takes the bytes object itself: wrapping it in an
        array first costs more than the rest of the call's dispatch (measured ~450 ns)."""
        if type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > self._scratch_bytes:
            self._fit_scratch(len(payload))
        action = self._step(payload, ts_recv, conn, True, *self._kernel_args)
        if action:
            self._act(Action(action), payload, ts_recv, conn)

    def on_batch(self, batch: FrameBatch) -> None:
        """Every frame of a capture batch, in order, in as few numba calls as the frames allow."""
        if len(batch) == 0:
            return
        self._fit_scratch(int((batch.stops - batch.starts).max()))
        k, end = 0, len(batch)
        while k < end:
            k, action = run_frames(self.VENUE, batch.data, batch.starts, batch.stops, batch.kinds, batch.ts,
                                   batch.conns, k, end, *self._kernel_args)
            if k == end:
                break
            ts_recv, conn = int(batch.ts[k]), int(batch.conns[k])
            if action == Action.OTHER:
                self.on_event(FrameKind(int(batch.kinds[k])), batch.payload(k), ts_recv, conn)
            else:
                self._act(Action(action), batch.payload(k), ts_recv, conn)
            k += 1

    def on_event(self, kind: FrameKind, payload: bytes, ts_recv: int, conn: int) -> None:
        """A captured frame other than a received message: REST response, connect, disconnect."""
        if kind == FrameKind.REST:
            _, url, _, body = split_rest(payload)
            self.on_rest(url, body, ts_recv)
        elif kind == FrameKind.CONNECT:
            self.on_connect(conn, ts_recv)
        elif kind == FrameKind.DISCONNECT:
            self.on_disconnect(conn, ts_recv)

    def on_rest(self, url: str, body: bytes, ts_recv: int) -> None:
        """A REST response; only Binance books take one (their snapshots)."""

    def on_connect(self, conn: int, ts_recv: int) -> None:
        """A new connection under this id: its sequence numbering starts over."""
        self.conn_state[conn, CS_SEQUENCE] = -1
        self._venue_status(Status.CONNECT, Reason.NONE, ts_recv)

    def on_disconnect(self, conn: int, ts_recv: int) -> None:
        """The connection dropped: every book it carried is invalid until resynced on a new one."""
        self._venue_status(Status.DISCONNECT, Reason.DISCONNECTED, ts_recv)
        for book in np.flatnonzero(self.sync[:, SY_CONN] == conn):
            if self.sync[book, SY_STATE] in (LIVE, BRIDGING):
                self._invalidate(int(book), Reason.DISCONNECTED, ts_recv)
            self.sync[book, SY_STATE] = CONNECTING
            self.sync[book, SY_CONN] = -1

    # ---------------------------------------------------------------- sync lifecycle

    def state(self, book: int) -> SyncState:
        return SyncState(int(self.sync[book, SY_STATE]))

    def books_to_resync(self, now: float | None = None) -> list[str]:
        """Venue symbols of the books that wait for a snapshot and whose resync the rate limit
        allows now; each returned book is marked SNAPSHOT (asked for) and its request recorded.
        Binance: fetch their REST snapshots; Kraken, Coinbase: resubscribe them."""
        now = self.clock() if now is None else now
        wanted = []
        for book in range(len(self.instruments)):
            if self._wants_snapshot(book) and self.limiter.allowed(book, now):
                self.limiter.requested(book, now)
                self.sync[book, SY_STATE] = SNAPSHOT
                wanted.append(self.instruments[book].venue_symbol)
        return wanted

    def snapshot_failed(self, venue_symbol: str) -> None:
        """A requested snapshot did not come (REST error, lost subscription): the book waits for
        the next `books_to_resync` the rate limit allows."""
        book = self._index[venue_symbol]
        if self.sync[book, SY_STATE] == SNAPSHOT:
            self.sync[book, SY_STATE] = self.WAITING

    def overdue_snapshots(self, timeout_s: float, now: float | None = None) -> list[str]:
        """Books asked for a snapshot more than `timeout_s` ago that have none yet: failed."""
        now = self.clock() if now is None else now
        overdue = [self.instruments[book].venue_symbol for book in range(len(self.instruments))
                   if self.sync[book, SY_STATE] == SNAPSHOT and now - self.limiter.last(book) > timeout_s]
        for venue_symbol in overdue:
            self.snapshot_failed(venue_symbol)
        return overdue

    def _wants_snapshot(self, book: int) -> bool:
        return int(self.sync[book, SY_STATE]) == RESYNC

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        """What a step could not do alone (Action other than DONE)."""
        raise NotImplementedError(f"{type(self).__name__} got {action!r}")

    # ---------------------------------------------------------------- book helpers (rare paths)

    def _invalidate(self, book: int, reason: Reason, ts_recv: int) -> None:
        invalidate(book, int(reason), ts_recv, *self._book_args()[1:])

    def _book_args(self) -> tuple:
        """scratch, sync, the book arrays and the segment arrays: the tail of settle's arguments."""
        books, writer = self.books, self.writer
        return (self._scratch, self.sync, books.levels, books.ladder, books.meta, writer.books, writer.ring,
                writer.ring_control, writer.counters, self.latency)

    def _venue_status(self, code: Status, reason: Reason, ts_recv: int) -> None:
        status(-1, int(code), int(reason), ts_recv, self.writer.ring, self.writer.ring_control)

    def _decode_error(self) -> None:
        self.counters[-1, Counter.DECODE_ERRORS] += 1


class BinanceFeed(VenueFeed):
    """Binance spot books: diffs buffered until a REST snapshot bridges them (official procedure):
    a snapshot older than the first buffered diff is stale (fetch again), diffs it already holds
    are dropped, then every diff must continue the last (U == previous u + 1)."""

    VENUE = BINANCE
    WAITING = BUFFERING

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, buffer_frames: int = 10_000):
        super().__init__(instruments, writer, capacity, latency)
        self.buffer_frames = buffer_frames
        self.buffered: list[deque] = [deque() for _ in instruments]  # (payload, ts_recv, conn, first id)
        self.stale_snapshots = 0

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        book = int(self._header[binance.H_INSTRUMENT])
        if action == Action.GAP:
            self.buffered[book].clear()
        elif self.sync[book, SY_STATE] in (CONNECTING, RESYNC):
            self.sync[book, SY_STATE] = BUFFERING
        buffered = self.buffered[book]
        if len(buffered) >= self.buffer_frames:
            buffered.popleft()  # a snapshot must now be newer than what is left
        buffered.append((payload, ts_recv, conn, int(self._header[binance.H_FIRST_ID])))

    def _wants_snapshot(self, book: int) -> bool:
        return int(self.sync[book, SY_STATE]) == BUFFERING and bool(self.buffered[book])

    def on_disconnect(self, conn: int, ts_recv: int) -> None:
        for book in np.flatnonzero(self.sync[:, SY_CONN] == conn):
            self.buffered[book].clear()  # diffs of a dead connection bridge nothing
        super().on_disconnect(conn, ts_recv)

    def on_rest(self, url: str, body: bytes, ts_recv: int) -> None:
        parsed = urlparse(url)
        if parsed.path.endswith("/depth"):
            self.on_snapshot(parse_qs(parsed.query).get("symbol", [""])[0], body, ts_recv)

    def on_snapshot(self, venue_symbol: str, body: bytes, ts_recv: int) -> None:
        """A REST depth snapshot for one book (asked for through `books_to_resync`)."""
        book = self._index.get(venue_symbol)
        if book is None:
            self._decode_error()
            return
        if self.sync[book, SY_STATE] in (LIVE, BRIDGING):
            return  # not asked for: the book is already bridged
        buffered = self.buffered[book]
        self._fit_scratch(len(body))
        inst = self.instruments[book]
        scratch = self._scratch
        last_id, _, total, err = binance.decode_snapshot(np.frombuffer(body, np.uint8), len(body), inst.px_dec,
                                                         inst.qty_dec, scratch[ROW_SIDE], scratch[ROW_PRICE],
                                                         scratch[ROW_QTY])
        if err != 0:
            self.counters[book, Counter.DECODE_ERRORS] += 1
            return
        if buffered and last_id < buffered[0][3]:
            self.stale_snapshots += 1  # older than the buffer: fetch again
            self.sync[book, SY_STATE] = BUFFERING
            return
        books = self.books
        load_snapshot(book, 0, total, scratch, books.levels, books.ladder, books.meta, self.counters)
        mark_decoded(self.latency, ts_recv, False)  # the snapshot's publish hop starts here
        self.sync[book, SY_UPDATE_ID] = last_id
        if not settle(book, True, NO_CHECKSUM, 0, ts_recv, *self._book_args()):
            return
        self.sync[book, SY_STATE] = BRIDGING
        frames = list(buffered)
        buffered.clear()
        for payload, frame_ts, conn, _ in frames:
            action = self._step(payload, frame_ts, conn, False, *self._kernel_args)
            if action:
                self._act(Action(action), payload, frame_ts, conn)
        if self.sync[book, SY_STATE] == BRIDGING:
            self.sync[book, SY_STATE] = LIVE


class KrakenFeed(VenueFeed):
    """Kraken books, v1 or v2 frames: a snapshot arrives on the socket; every update is applied,
    the book truncated to the subscribed depth, and the CRC32 of the top 10 checked (v2 checks
    the snapshot too). A mismatch invalidates that book only, which then waits for a fresh snapshot
    (resubscribe). v2 messages do not carry the depth: it comes from the subscription ack."""

    VENUE = KRAKEN
    CAPACITY = 2048  # Kraken books are at most 1,000 levels deep

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, depth: int = 10):
        super().__init__(instruments, writer, capacity, latency)
        self.sync[:, SY_DEPTH] = depth

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        if action == Action.ACK:
            self._subscription_ack(payload)

    def _subscription_ack(self, payload: bytes) -> None:
        """v2: `{"method":"subscribe","result":{"channel":"book","depth":N,"symbol":S},...}` sets S's depth."""
        try:
            result = json.loads(payload).get("result", {})
        except (ValueError, AttributeError):
            self._decode_error()
            return
        if not isinstance(result, dict):
            return
        book = self._index.get(result.get("symbol"))
        if result.get("channel") == "book" and book is not None and isinstance(result.get("depth"), int):
            self.sync[book, SY_DEPTH] = result["depth"]


class CoinbaseFeed(VenueFeed):
    """Coinbase books from either API. Advanced Trade: the l2_data snapshot event makes a book valid,
    updates follow, and every message's sequence_num must follow the last one of its connection; a
    jump invalidates every book that connection carries (they resubscribe). Exchange level2: a
    snapshot, then l2update changes (no sequence on that channel)."""

    VENUE = COINBASE
    CAPACITY = 65536  # full-depth snapshots: BTC-USD had 27k offers in 2026
