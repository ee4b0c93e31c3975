"""A venue feed: frames in, books and events out to the venue's shared-memory segment.

The same object serves a live worker (frames from sockets, snapshots it fetches when asked) and a
replay (batches of frames from a capture), so both take exactly the same decode and book path.
Each received frame is one numba call (the venue's `step`: decode, sequence check, apply, settle,
publish); Python runs only when the step hands back an Action (a diff to buffer, a snapshot to load,
a subscription ack) and for the per-book sync lifecycle (see `feedhandler.sync`).
Feeds do no I/O: what the sync machine needs from the network (a REST snapshot, a resubscription)
comes back from `requests()` as data, and the worker carries it out. Each venue's feed subclass
lives in its package (`feedhandler.venues.<venue>.feed`).
"""
from __future__ import annotations

import time

import numpy as np

from shm.histogram import HIST_WORDS
from shm.jitcache import entry
from shm.layout import Counter, Reason, Status
from shm.segment import SegmentWriter

from .book import BookStore
from .capture import FrameBatch, FrameKind, split_rest
from .feed_kernels import SCRATCH_ROWS, TABLE_ROWS, T_LENGTH, T_PX_DEC, T_QTY_DEC, FeedArrays, invalidate, status
from .instruments import Instrument
from .jsonscan import symbol_table
from .publish import VENUE_HOPS, output_of
from .sync import (BRIDGING, CONNECTING, CS_SEQUENCE, CS_TIME_UNIT, LIVE, RESYNC, SNAPSHOT, SY_CONN, SY_NEXT_CONN,
                   SY_STATE, Action, ResyncLimiter, SyncState, new_conn_state, new_sync)
from .venues.base import FetchSnapshot, PlanOptions, Poll, Request, Resubscribe, VenueProtocol

INITIAL_LEVELS = 20_000
HEADER_WORDS = 16
# MARKER frames a worker records on a rotating connection, so that a replay hands books over as it did
HAND_OVER, HANDED_OVER = b"hand-over", b"handed-over"


class VenueFeed:
    """What every venue feed shares: the instrument table as decoder arrays, the books, the sync
    words, the scratch arrays a decoder fills, and the Python side of the sync machine."""

    PROTOCOL: VenueProtocol  # the venue's messages (resubscriptions, snapshot requests)
    PROTOCOL_ID = -1  # the decoder's id in venues.dispatch (one numba call per batch of frames)
    STEP = None  # the venue's numba step: one call per received frame
    EVENT_SHAPE = (1, 1)  # rows and words of the decoder's per-frame event table
    WAITING = RESYNC  # the state of a book that needs a snapshot it has not asked for yet
    CAPACITY = 8192  # default run rows per book side; the segment's instrument table records it
    SNAPSHOT_TIMEOUT_S = 20.0  # a snapshot asked for and not loaded by then has failed
    clock = staticmethod(time.monotonic)  # seconds, for the resync rate limit

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, options: PlanOptions | None = None):
        """`latency`: the histogram rows of publish.VENUE_HOPS, in shared memory (shm.latency) when
        someone reads them; a private array otherwise. `options`: the venue configuration the
        feed's requests are built from (URLs, depths); replays need none."""
        from .venues.dispatch import run_frames  # the dispatch imports every venue, and they import this

        self._run_frames = run_frames
        self.options = options or PlanOptions("", "")
        self.instruments = instruments
        self.writer = writer
        self.latency = latency if latency is not None else np.zeros((len(VENUE_HOPS), HIST_WORDS), np.int64)
        self.books = BookStore([capacity or self.CAPACITY] * len(instruments), ticks=[i.tick_units for i in instruments])
        self.sync = new_sync(len(instruments))
        self.conn_state = new_conn_state()
        self.limiter = ResyncLimiter(len(instruments))
        self._req_id = 100
        self.counters = writer.counters
        self._index = {inst.venue_symbol: i for i, inst in enumerate(instruments)}
        self.carrier = np.full(len(instruments), -1, np.int64)  # the planned connection of each book
        self._next_poll = np.full(len(instruments), -np.inf)  # when each instrument's poll is due (polls)
        self._symbols, lengths = symbol_table([inst.venue_symbol for inst in instruments])
        self._tables = np.zeros((TABLE_ROWS, len(instruments)), np.int64)
        self._tables[T_LENGTH] = lengths
        self._tables[T_PX_DEC] = [inst.px_dec for inst in instruments]
        self._tables[T_QTY_DEC] = [inst.qty_dec for inst in instruments]
        self._header = np.zeros(HEADER_WORDS, np.int64)
        self._events = np.zeros(self.event_shape(len(instruments)), np.int64)
        self._scratch = np.zeros((SCRATCH_ROWS, 0), np.int64)
        self._scratch_bytes = -1  # the largest frame the scratch rows can take
        self._fit_scratch(INITIAL_LEVELS * 8)
        # the step's compiled entry for the types of its per-frame call (a frame, ts, conn, fresh, the groups)
        self._step = entry(type(self).STEP, b"", 0, 0, True, self._feed, self._books, self._out)

    def record_books(self, rows: int) -> None:
        """Journal up to `rows` of the changes this feed makes to its books from now on (see
        book_kernels' journal): what `fh bench book --capture` replays through the book alone."""
        self.books.record(rows)
        self._books = self.books.arrays

    @classmethod
    def event_shape(cls, instruments: int) -> tuple[int, int]:
        """The shape of the decoder's event table for this many instruments: EVENT_SHAPE unless the
        decoder keeps a row per instrument."""
        return cls.EVENT_SHAPE

    def _fit_scratch(self, frame_bytes: int) -> None:
        """Size the scratch rows for frames up to `frame_bytes`: a level takes at least 8 bytes of
        JSON, so a frame never holds more than len/8 of them (full-depth snapshots carry ~46k)."""
        if frame_bytes <= self._scratch_bytes:
            return
        levels = max(frame_bytes // 8 + 32, 2 * self._scratch.shape[1])
        self._scratch = np.zeros((SCRATCH_ROWS, levels), np.int64)
        self._scratch_bytes = 8 * (levels - 32)
        # the argument groups of the step and of the kernels called from here (see feed_kernels)
        self._feed = FeedArrays(self._symbols, self._tables, self._scratch, self._header, self._events, self.sync,
                                self.conn_state)
        self._books = self.books.arrays
        self._out = output_of(self.writer, self.latency)

    # ---------------------------------------------------------------- frames in

    def on_frame(self, payload: bytes, ts_recv: int, conn: int = 0) -> None:
        """One received WebSocket message. The step takes the bytes object itself: wrapping it in an
        array first costs more than the rest of the call's dispatch (measured ~450 ns)."""
        if type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > self._scratch_bytes:
            self._fit_scratch(len(payload))
        action = self._step(payload, ts_recv, conn, True, self._feed, self._books, self._out)
        if action:
            self._act(Action(action), payload, ts_recv, conn)

    def on_batch(self, batch: FrameBatch) -> None:
        """Every frame of a capture batch, in order, in as few numba calls as the frames allow."""
        if len(batch) == 0:
            return
        self._fit_scratch(int((batch.stops - batch.starts).max()))
        k, end = 0, len(batch)
        frames = batch.arrays()
        while k < end:
            k, action = self._run_frames(self.PROTOCOL_ID, frames, k, end, self._feed, self._books, self._out)
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
            self.on_connect(conn, ts_recv, payload.decode(errors="replace"))
        elif kind == FrameKind.DISCONNECT:
            self.on_disconnect(conn, ts_recv)
        elif kind == FrameKind.MARKER:
            self.on_marker(conn, payload)

    def on_marker(self, conn: int, payload: bytes) -> None:
        """`hand-over N` / `handed-over N` on connection `conn`: a rotation to connection N begins /
        ends (`begin_hand_over`, `finish_hand_over`). Other markers are notes for people."""
        word, _, new = payload.partition(b" ")
        if word == HAND_OVER and new.isdigit():
            self.begin_hand_over(conn, int(new))
        elif word == HANDED_OVER and new.isdigit():
            self.finish_hand_over(conn, int(new))

    def on_rest(self, url: str, body: bytes, ts_recv: int) -> None:
        """A REST response: venues whose snapshots come by REST load them here."""

    def on_connect(self, conn: int, ts_recv: int, url: str = "") -> None:
        """A new connection under this id to `url`: its sequence numbering starts over, its
        timestamps are in the unit its URL asked for."""
        self.conn_state[conn, CS_SEQUENCE] = -1
        self.conn_state[conn, CS_TIME_UNIT] = self.PROTOCOL.time_unit_ns(url)
        self._venue_status(Status.CONNECT, Reason.NONE, ts_recv)

    def on_disconnect(self, conn: int, ts_recv: int) -> None:
        """The connection dropped: every book it carried is invalid until resynced on a new one."""
        self._venue_status(Status.DISCONNECT, Reason.DISCONNECTED, ts_recv)
        for book in np.flatnonzero(self.sync[:, SY_CONN] == conn):
            if self.sync[book, SY_STATE] in (LIVE, BRIDGING):
                self._invalidate(int(book), Reason.DISCONNECTED, ts_recv)
            self.sync[book, SY_STATE] = CONNECTING
            self.sync[book, SY_CONN] = -1
        self.sync[self.sync[:, SY_NEXT_CONN] == conn, SY_NEXT_CONN] = -1

    def on_capture(self, recording: bool, ts_recv: int) -> None:
        """The worker's capture stopped after a failed write, or resumed to a new file: a venue STATUS
        record, so that readers know the frames of that time are not recorded."""
        if recording:
            self._venue_status(Status.CAPTURE_RESUMED, Reason.NONE, ts_recv)
        else:
            self._venue_status(Status.CAPTURE_STOPPED, Reason.CAPTURE_ERROR, ts_recv)

    # ---------------------------------------------------------------- connections

    def assign(self, conn: int, symbols: tuple[str, ...]) -> None:
        """Connection `conn` carries these books (from the plan): resubscriptions go there."""
        for symbol in symbols:
            self.carrier[self._index[symbol]] = conn

    def begin_hand_over(self, old: int, new: int) -> None:
        """A rotation: `new` carries the same books as `old`; each live book moves to `new` once
        `new` delivers a change that lines up with it (see the venue step)."""
        self.carrier[self.carrier == old] = new
        self.sync[self.sync[:, SY_CONN] == old, SY_NEXT_CONN] = new

    def finish_hand_over(self, old: int, new: int) -> None:
        """Before `old` closes: books that had no change to line up during the overlap (quiet) move
        to `new` as they are; the next change on `new` continues them."""
        quiet = (self.sync[:, SY_CONN] == old) & (self.sync[:, SY_NEXT_CONN] == new)
        self.sync[quiet, SY_CONN] = new
        self.sync[quiet, SY_NEXT_CONN] = -1

    def waiting_hand_over(self, old: int) -> int:
        """How many books still wait for a rotation away from `old` to line up."""
        return int(np.count_nonzero((self.sync[:, SY_CONN] == old) & (self.sync[:, SY_NEXT_CONN] >= 0)))

    # ---------------------------------------------------------------- sync lifecycle

    def index(self, venue_symbol: str) -> int:
        """The book number of a venue symbol."""
        return self._index[venue_symbol]

    def state(self, book: int) -> SyncState:
        return SyncState(int(self.sync[book, SY_STATE]))

    def books_to_resync(self, now: float | None = None) -> list[str]:
        """Venue symbols of the books that wait for a snapshot and whose resync the rate limit
        allows now; each returned book is marked SNAPSHOT (asked for) and its request recorded.
        `requests` turns them into REST snapshot fetches or resubscriptions."""
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

    def requests(self, now: float | None = None) -> list[Request]:
        """What the sync machine needs from the network now: snapshots overdue are failed, then the
        books the resync rate limit lets ask get a REST snapshot (`FetchSnapshot`) or, where the
        venue sends snapshots on the socket, a resubscription on their connection (`Resubscribe`)."""
        now = self.clock() if now is None else now
        self.overdue_snapshots(self.SNAPSHOT_TIMEOUT_S, now)
        wanted = self.books_to_resync(now)
        if not wanted:
            return []
        requests: list[Request] = []
        by_conn: dict[int, list[str]] = {}
        for symbol in wanted:
            rest = self.PROTOCOL.snapshot_request(symbol, self.options)
            if rest is not None:
                requests.append(FetchSnapshot(symbol, rest))
            else:
                by_conn.setdefault(int(self.carrier[self._index[symbol]]), []).append(symbol)
        for conn, symbols in by_conn.items():
            self._req_id += 2
            requests.append(Resubscribe(conn, tuple(symbols),
                                        self.PROTOCOL.resubscribe(tuple(symbols), self.options, self._req_id)))
        return requests

    def polls(self, now: float | None = None) -> list[Poll]:
        """The REST polls due now for what the venue does not stream (the protocol's `poll_request`):
        each instrument every `poll_interval_s`, the first ones spread over one interval."""
        interval = self.PROTOCOL.poll_interval_s(len(self.instruments))
        if not interval:
            return []
        now = self.clock() if now is None else now
        if np.isneginf(self._next_poll).any():
            self._next_poll = now + np.arange(len(self.instruments)) * interval / len(self.instruments)
        due = np.flatnonzero(self._next_poll <= now)
        self._next_poll[due] = now + interval
        return [Poll(symbol, self.PROTOCOL.poll_request(symbol, self.options))
                for symbol in (self.instruments[book].venue_symbol for book in due)]

    def _wants_snapshot(self, book: int) -> bool:
        return int(self.sync[book, SY_STATE]) == RESYNC

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        """What a step could not do alone (Action other than DONE)."""
        raise NotImplementedError(f"{type(self).__name__} got {action!r}")

    # ---------------------------------------------------------------- book helpers (rare paths)

    def _invalidate(self, book: int, reason: Reason, ts_recv: int) -> None:
        invalidate(book, int(reason), ts_recv, self.sync, self._books, self._out)

    def _venue_status(self, code: Status, reason: Reason, ts_recv: int) -> None:
        status(-1, int(code), int(reason), ts_recv, self._out)

    def _decode_error(self) -> None:
        self.counters[-1, Counter.DECODE_ERRORS] += 1
