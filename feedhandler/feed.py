"""A venue feed: frames in, books and events out to the venue's shared-memory segment.

The same object serves a live worker (frames from sockets, snapshots it fetches when asked) and a
replay (frames and snapshots from a capture), so both take exactly the same decode and book path.
Per book it runs the sync state machine: buffering -> live -> (gap, crossed) -> buffering ...;
nothing is published as valid until the book is bridged to a snapshot.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from shm.layout import Counter, Reason, Status
from shm.ring import publish_status, publish_trade
from shm.segment import SegmentWriter

from .book import BookStore
from .book_kernels import ASK, BID, M_ABSENT_DELETES, M_OVERFLOW, apply_changes, is_crossed, load_side
from .instruments import Instrument
from .jsonscan import symbol_table
from .publish import publish
from .venues import binance

MAX_LEVELS_PER_FRAME = 20_000


class SyncState(Enum):
    BUFFERING = "buffering"  # diffs kept until a snapshot bridges them
    LIVE = "live"


@dataclass
class BookSync:
    state: SyncState = SyncState.BUFFERING
    update_id: int = 0
    buffered: deque = field(default_factory=deque)  # (payload, ts_recv, first update id)
    stale_snapshots: int = 0


class BinanceFeed:
    """Binance spot books for `instruments`, published into `writer` (its instruments, same order)."""

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int = 8192,
                 buffer_frames: int = 10_000):
        self.instruments = instruments
        self.writer = writer
        self.books = BookStore([capacity] * len(instruments))
        self.sync = [BookSync() for _ in instruments]
        self.buffer_frames = buffer_frames
        self._index = {inst.venue_symbol: i for i, inst in enumerate(instruments)}
        self._symbols, self._lengths = symbol_table([inst.venue_symbol for inst in instruments])
        self._px_decs = np.array([inst.px_dec for inst in instruments], np.int64)
        self._qty_decs = np.array([inst.qty_dec for inst in instruments], np.int64)
        self._sides = np.zeros(MAX_LEVELS_PER_FRAME, np.int64)
        self._prices = np.zeros(MAX_LEVELS_PER_FRAME, np.int64)
        self._qtys = np.zeros(MAX_LEVELS_PER_FRAME, np.int64)
        self._header = np.zeros(binance.HEADER_WORDS, np.int64)
        self.counters = writer.counters

    # ---------------------------------------------------------------- inputs

    def on_frame(self, payload: bytes, ts_recv: int) -> None:
        venue = self.counters[-1]
        venue[Counter.FRAMES] += 1
        venue[Counter.BYTES] += len(payload)
        buf = np.frombuffer(payload, np.uint8)
        kind = binance.decode(buf, len(buf), self._symbols, self._lengths, self._px_decs, self._qty_decs,
                              self._sides, self._prices, self._qtys, self._header)
        if kind == binance.FRAME_DEPTH:
            self._on_depth(int(self._header[binance.H_INSTRUMENT]), payload, ts_recv)
        elif kind == binance.FRAME_TRADE:
            self._on_trade(ts_recv)
        elif kind in (binance.FRAME_ERROR, binance.FRAME_UNKNOWN_SYMBOL):
            venue[Counter.DECODE_ERRORS] += 1

    def on_snapshot(self, venue_symbol: str, body: bytes, ts_recv: int) -> None:
        """A REST depth snapshot for one book (requested through `snapshots_wanted`)."""
        book = self._index.get(venue_symbol)
        if book is None:
            self.counters[-1, Counter.DECODE_ERRORS] += 1
            return
        sync = self.sync[book]
        if sync.state == SyncState.LIVE:
            return  # not asked for: the book is already bridged
        inst = self.instruments[book]
        buf = np.frombuffer(body, np.uint8)
        capacity = max(MAX_LEVELS_PER_FRAME, 2 * len(buf) // 8)
        sides, prices, qtys = (np.empty(capacity, np.int64) for _ in range(3))
        last_id, n_bids, total, err = binance.decode_snapshot(buf, len(buf), inst.px_dec, inst.qty_dec, sides,
                                                              prices, qtys)
        if err != 0:
            self.counters[book, Counter.DECODE_ERRORS] += 1
            return
        if sync.buffered and last_id < sync.buffered[0][2]:
            sync.stale_snapshots += 1  # older than the buffer: refetch
            return
        books = self.books
        load_side(books.levels, books.ladder, books.meta, book, BID, prices[:n_bids], qtys[:n_bids], n_bids)
        load_side(books.levels, books.ladder, books.meta, book, ASK, prices[n_bids:total], qtys[n_bids:total],
                  total - n_bids)
        sync.state = SyncState.LIVE
        sync.update_id = last_id
        buffered = list(sync.buffered)
        sync.buffered.clear()
        self._status(book, Status.BOOK_VALID, Reason.SNAPSHOT, ts_recv)
        self._publish(book, 0, ts_recv, True)
        for frame, frame_ts, _ in buffered:
            buf = np.frombuffer(frame, np.uint8)  # decoded again: the scratch arrays held other frames
            binance.decode(buf, len(buf), self._symbols, self._lengths, self._px_decs, self._qty_decs,
                           self._sides, self._prices, self._qtys, self._header)
            self._on_depth(book, frame, frame_ts)

    def snapshots_wanted(self) -> list[str]:
        """Venue symbols whose books wait for a snapshot (buffering, with at least one diff)."""
        return [self.instruments[i].venue_symbol for i, sync in enumerate(self.sync)
                if sync.state == SyncState.BUFFERING and sync.buffered]

    # ---------------------------------------------------------------- book path

    def _on_depth(self, book: int, payload: bytes, ts_recv: int) -> None:
        sync = self.sync[book]
        header = self._header
        first_id, last_id = int(header[binance.H_FIRST_ID]), int(header[binance.H_LAST_ID])
        if sync.state != SyncState.LIVE:
            self._buffer(book, payload, ts_recv)
            return
        if last_id <= sync.update_id:
            return  # already in the snapshot, or a duplicate
        if first_id > sync.update_id + 1:
            self.counters[book, Counter.GAPS] += 1
            self._status(book, Status.GAP, Reason.SEQUENCE_GAP, ts_recv)
            self._invalidate(book, Reason.SEQUENCE_GAP, ts_recv)
            self._buffer(book, payload, ts_recv)
            return
        books = self.books
        n = int(header[binance.H_LEVELS])
        before_absent = books.meta[book, M_ABSENT_DELETES]
        before_overflow = books.meta[book, M_OVERFLOW]
        apply_changes(books.levels, books.ladder, books.meta, book, self._sides[:n], self._prices[:n], self._qtys[:n])
        self.counters[book, Counter.ABSENT_DELETES] += books.meta[book, M_ABSENT_DELETES] - before_absent
        self.counters[book, Counter.BOOK_OVERFLOW] += books.meta[book, M_OVERFLOW] - before_overflow
        sync.update_id = last_id
        ts_exchange = int(header[binance.H_EVENT_TIME]) * 1_000_000
        if is_crossed(books.levels, books.ladder, books.meta, book):
            self.counters[book, Counter.CROSSED] += 1
            self._invalidate(book, Reason.CROSSED, ts_recv)
            return
        self.counters[book, Counter.BOOK_UPDATES] += 1
        self._publish(book, ts_exchange, ts_recv, True)

    def _on_trade(self, ts_recv: int) -> None:
        header = self._header
        book = int(header[binance.H_INSTRUMENT])
        self.counters[book, Counter.TRADES] += 1
        publish_trade(self.writer.ring, self.writer.ring_control, book, int(header[binance.H_FIRST_ID]),
                      int(header[binance.H_EVENT_TIME]) * 1_000_000, ts_recv, time.time_ns(),
                      int(header[binance.H_PRICE]), int(header[binance.H_QTY]), int(header[binance.H_SIDE]))

    def _buffer(self, book: int, payload: bytes, ts_recv: int) -> None:
        """Keep a diff (the one just decoded) until a snapshot bridges it; bounded."""
        buffered = self.sync[book].buffered
        if len(buffered) >= self.buffer_frames:
            buffered.popleft()  # a snapshot must now be newer than what is left
        buffered.append((payload, ts_recv, int(self._header[binance.H_FIRST_ID])))

    def _invalidate(self, book: int, reason: Reason, ts_recv: int) -> None:
        """Mark one book invalid for every consumer and start its resync; other books carry on."""
        sync = self.sync[book]
        sync.state = SyncState.BUFFERING
        sync.buffered.clear()
        self.books.clear(book)
        self.counters[book, Counter.RESYNCS] += 1
        self._status(book, Status.BOOK_INVALID, reason, ts_recv)
        self._publish(book, 0, ts_recv, False)

    def _publish(self, book: int, ts_exchange: int, ts_recv: int, valid: bool) -> None:
        books, writer = self.books, self.writer
        publish(books.levels, books.ladder, books.meta, book, writer.books, writer.ring, writer.ring_control,
                self.sync[book].update_id, ts_exchange, ts_recv, valid)

    def _status(self, book: int, status: Status, reason: Reason, ts_recv: int) -> None:
        publish_status(self.writer.ring, self.writer.ring_control, book, int(status), int(reason), 0, ts_recv,
                       time.time_ns())
