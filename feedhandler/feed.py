"""A venue feed: frames in, books and events out to the venue's shared-memory segment.

The same object serves a live worker (frames from sockets, snapshots it fetches when asked) and a
replay (frames and snapshots from a capture), so both take exactly the same decode and book path.
Per book it runs the sync state machine: buffering -> live -> (gap, crossed) -> buffering ...;
nothing is published as valid until the book is bridged to a snapshot.
"""
from __future__ import annotations

import json
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
from .jsonscan import NO_TRADE_ID, symbol_table
from .publish import publish
from .venues import binance, coinbase, kraken

INITIAL_LEVELS = 20_000


class SyncState(Enum):
    BUFFERING = "buffering"  # diffs kept until a snapshot bridges them
    LIVE = "live"


@dataclass
class BookSync:
    state: SyncState = SyncState.BUFFERING
    update_id: int = 0
    buffered: deque = field(default_factory=deque)  # (payload, ts_recv, first update id)
    stale_snapshots: int = 0


class VenueFeed:
    """What every venue feed shares: the instrument table as decoder arrays, the books, the scratch
    arrays a decoder fills, and publishing books, statuses and invalidations to the segment."""

    HEADER_WORDS = 16
    CAPACITY = 8192  # default run rows per book side; the segment's instrument table records it

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None):
        self.instruments = instruments
        self.writer = writer
        self.books = BookStore([capacity or self.CAPACITY] * len(instruments))
        self.sync = [BookSync() for _ in instruments]
        self._index = {inst.venue_symbol: i for i, inst in enumerate(instruments)}
        self._symbols, self._lengths = symbol_table([inst.venue_symbol for inst in instruments])
        self._px_decs = np.array([inst.px_dec for inst in instruments], np.int64)
        self._qty_decs = np.array([inst.qty_dec for inst in instruments], np.int64)
        self._sides, self._prices, self._qtys, self._times, self._ids, self._books = (
            np.zeros(INITIAL_LEVELS, np.int64) for _ in range(6))
        self._header = np.zeros(self.HEADER_WORDS, np.int64)
        self._trades_seen = [0] * len(instruments)  # numbers the trades of venues that give no ids
        self.counters = writer.counters

    def books_to_resubscribe(self) -> list[str]:
        """Venue symbols of the books that are not live: for venues whose snapshot comes on the
        socket (Kraken, Coinbase), resubscribing them is the resync."""
        return [self.instruments[i].venue_symbol for i, sync in enumerate(self.sync)
                if sync.state != SyncState.LIVE]

    def _fit_scratch(self, payload: bytes) -> None:
        """Size the level arrays for this frame: a level takes at least 8 bytes of JSON, so a frame
        can never hold more than len/8 of them (Coinbase snapshots carry ~46k)."""
        needed = len(payload) // 8 + 1
        if needed > len(self._prices):
            size = max(needed, 2 * len(self._prices))
            self._sides, self._prices, self._qtys, self._times, self._ids, self._books = (
                np.zeros(size, np.int64) for _ in range(6))

    def _decode(self, decoder, payload: bytes) -> int:
        self._fit_scratch(payload)
        buf = np.frombuffer(payload, np.uint8)
        return decoder(buf, len(buf), self._symbols, self._lengths, self._px_decs, self._qty_decs, self._sides,
                       self._prices, self._qtys, self._header)

    def _count_frame(self, payload: bytes) -> None:
        self.counters[-1, Counter.FRAMES] += 1
        self.counters[-1, Counter.BYTES] += len(payload)

    def _apply(self, book: int, first: int, end: int) -> None:
        """Apply decoded levels [first, end) to a book, counting absent deletes and overflow into shm."""
        books = self.books
        before_absent = books.meta[book, M_ABSENT_DELETES]
        before_overflow = books.meta[book, M_OVERFLOW]
        apply_changes(books.levels, books.ladder, books.meta, book, self._sides[first:end],
                      self._prices[first:end], self._qtys[first:end])
        self.counters[book, Counter.ABSENT_DELETES] += books.meta[book, M_ABSENT_DELETES] - before_absent
        self.counters[book, Counter.BOOK_OVERFLOW] += books.meta[book, M_OVERFLOW] - before_overflow

    def _load(self, book: int, sides: np.ndarray, prices: np.ndarray, qtys: np.ndarray) -> None:
        """Replace a book with decoded snapshot levels (each tagged with its side)."""
        books = self.books
        for side in (BID, ASK):
            chosen = sides == side
            side_prices, side_qtys = prices[chosen], qtys[chosen]
            load_side(books.levels, books.ladder, books.meta, book, side, side_prices, side_qtys, len(side_prices))

    def _crossed(self, book: int, ts_recv: int) -> bool:
        """A crossed book is never published as valid: count it and invalidate that book."""
        books = self.books
        if is_crossed(books.levels, books.ladder, books.meta, book):
            self.counters[book, Counter.CROSSED] += 1
            self._invalidate(book, Reason.CROSSED, ts_recv)
            return True
        return False

    def _went_live(self, book: int, update_id: int, ts_recv: int) -> None:
        sync = self.sync[book]
        sync.state = SyncState.LIVE
        sync.update_id = update_id
        self._status(book, Status.BOOK_VALID, Reason.SNAPSHOT, ts_recv)

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

    def _trade(self, book: int, trade_id: int, ts_exchange: int, ts_recv: int, price: int, qty: int,
               aggressor: int) -> None:
        """Publish one trade; `aggressor` is the taker's side (+1 buy, -1 sell) whatever the venue's convention."""
        self.counters[book, Counter.TRADES] += 1
        publish_trade(self.writer.ring, self.writer.ring_control, book, trade_id, ts_exchange, ts_recv,
                      time.time_ns(), price, qty, aggressor)

    def _trades(self, decoder, payload: bytes, ts_recv: int) -> None:
        """Decode a frame of trades (a decoder with `parse_trade_objects`' outputs) and publish them;
        trades without a venue id are numbered per book."""
        self._fit_scratch(payload)
        buf = np.frombuffer(payload, np.uint8)
        count = decoder(buf, len(buf), self._symbols, self._lengths, self._px_decs, self._qty_decs, self._books,
                        self._sides, self._prices, self._qtys, self._ids, self._times)
        if count < 0:
            self.counters[-1, Counter.DECODE_ERRORS] += 1
            return
        for k in range(count):
            book, trade_id = int(self._books[k]), int(self._ids[k])
            if trade_id == NO_TRADE_ID:
                self._trades_seen[book] += 1
                trade_id = self._trades_seen[book]
            self._trade(book, trade_id, int(self._times[k]), ts_recv, int(self._prices[k]), int(self._qtys[k]),
                        int(self._sides[k]))

    def _status(self, book: int, status: Status, reason: Reason, ts_recv: int) -> None:
        publish_status(self.writer.ring, self.writer.ring_control, book, int(status), int(reason), 0, ts_recv,
                       time.time_ns())


class BinanceFeed(VenueFeed):
    """Binance spot books: diffs buffered until a REST snapshot bridges them (official procedure)."""

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 buffer_frames: int = 10_000):
        super().__init__(instruments, writer, capacity)
        self.buffer_frames = buffer_frames

    def on_frame(self, payload: bytes, ts_recv: int, conn: int = 0) -> None:
        self._count_frame(payload)
        kind = self._decode(binance.decode, payload)
        if kind == binance.FRAME_DEPTH:
            self._on_depth(int(self._header[binance.H_INSTRUMENT]), payload, ts_recv)
        elif kind == binance.FRAME_TRADE:
            self._on_trade(ts_recv)
        elif kind in (binance.FRAME_ERROR, binance.FRAME_UNKNOWN_SYMBOL):
            self.counters[-1, Counter.DECODE_ERRORS] += 1

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
        self._fit_scratch(body)
        buf = np.frombuffer(body, np.uint8)
        sides, prices, qtys = self._sides, self._prices, self._qtys
        last_id, _, total, err = binance.decode_snapshot(buf, len(buf), inst.px_dec, inst.qty_dec, sides,
                                                         prices, qtys)
        if err != 0:
            self.counters[book, Counter.DECODE_ERRORS] += 1
            return
        if sync.buffered and last_id < sync.buffered[0][2]:
            sync.stale_snapshots += 1  # older than the buffer: refetch
            return
        self._load(book, sides[:total], prices[:total], qtys[:total])
        buffered = list(sync.buffered)
        sync.buffered.clear()
        self._went_live(book, last_id, ts_recv)
        self._publish(book, 0, ts_recv, True)
        for frame, frame_ts, _ in buffered:
            self._decode(binance.decode, frame)  # again: the scratch arrays have held other frames since
            self._on_depth(book, frame, frame_ts)

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
        self._apply(book, 0, int(header[binance.H_LEVELS]))
        sync.update_id = last_id
        if self._crossed(book, ts_recv):
            return
        self.counters[book, Counter.BOOK_UPDATES] += 1
        self._publish(book, int(header[binance.H_EVENT_TIME]) * 1_000_000, ts_recv, True)

    def snapshots_wanted(self) -> list[str]:
        """Venue symbols whose books wait for a snapshot (buffering, with at least one diff)."""
        return [self.instruments[i].venue_symbol for i, sync in enumerate(self.sync)
                if sync.state == SyncState.BUFFERING and sync.buffered]

    def _on_trade(self, ts_recv: int) -> None:
        header = self._header
        self._trade(int(header[binance.H_INSTRUMENT]), int(header[binance.H_FIRST_ID]),
                    int(header[binance.H_EVENT_TIME]) * 1_000_000, ts_recv, int(header[binance.H_PRICE]),
                    int(header[binance.H_QTY]), int(header[binance.H_SIDE]))

    def _buffer(self, book: int, payload: bytes, ts_recv: int) -> None:
        """Keep a diff (the one just decoded) until a snapshot bridges it; bounded."""
        buffered = self.sync[book].buffered
        if len(buffered) >= self.buffer_frames:
            buffered.popleft()  # a snapshot must now be newer than what is left
        buffered.append((payload, ts_recv, int(self._header[binance.H_FIRST_ID])))


class KrakenFeed(VenueFeed):
    """Kraken books, v1 or v2 frames: a snapshot arrives on the socket; every update is applied,
    the book truncated to the subscribed depth, and the CRC32 of the top 10 checked (v2 checks
    the snapshot too). A mismatch invalidates that book only, which then waits for a fresh snapshot
    (resubscribe). v2 messages do not carry the depth: it comes from the subscription ack."""

    CAPACITY = 2048  # Kraken books are at most 1,000 levels deep

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 depth: int = 10):
        super().__init__(instruments, writer, capacity)
        self._pads = [(0, 0)] * len(instruments)  # v1 wire decimals beyond the book's, for the checksum text
        self._depths = [depth] * len(instruments)

    def on_frame(self, payload: bytes, ts_recv: int, conn: int = 0) -> None:
        self._count_frame(payload)
        v2 = payload[:1] == b"{" and b'"channel"' in payload[:64]
        if payload[:1] == b"{" and b'"method":"subscribe"' in payload[:64]:
            self._subscription_ack(payload)
            return
        kind = self._decode(kraken.decode_v2 if v2 else kraken.decode, payload)
        header = self._header
        book = int(header[kraken.H_INSTRUMENT])
        if kind == kraken.FRAME_TRADES:
            self._trades(kraken.decode_trades, payload, ts_recv)
            return
        if kind == kraken.FRAME_TRADES_V2:
            self._trades(kraken.decode_v2_trades, payload, ts_recv)
            return
        if kind in (kraken.FRAME_ERROR, kraken.FRAME_UNKNOWN_SYMBOL):
            self.counters[-1, Counter.DECODE_ERRORS] += 1
            return
        if kind == kraken.FRAME_IGNORED:
            return
        if not v2:
            self._depths[book] = int(header[kraken.H_DEPTH])
        if kind == kraken.FRAME_SNAPSHOT:
            if not v2:
                inst = self.instruments[book]
                self._pads[book] = (max(0, int(header[kraken.H_PX_WIRE_DEC]) - inst.px_dec),
                                    max(0, int(header[kraken.H_QTY_WIRE_DEC]) - inst.qty_dec))
            n = int(header[kraken.H_LEVELS])
            self._load(book, self._sides[:n], self._prices[:n], self._qtys[:n])
            self.books.truncate(book, self._depths[book])
            if self._verified(book, ts_recv) and not self._crossed(book, ts_recv):
                self._went_live(book, 0, ts_recv)
                self._publish(book, 0, ts_recv, True)
        elif self.sync[book].state == SyncState.LIVE:  # an update: nothing to apply it to before a snapshot
            self._apply(book, 0, int(header[kraken.H_LEVELS]))
            self.books.truncate(book, self._depths[book])
            self.sync[book].update_id += 1  # Kraken numbers no update: count the ones applied
            if self._verified(book, ts_recv) and not self._crossed(book, ts_recv):
                self.counters[book, Counter.BOOK_UPDATES] += 1
                self._publish(book, 0, ts_recv, True)

    def _subscription_ack(self, payload: bytes) -> None:
        """v2: `{"method":"subscribe","result":{"channel":"book","depth":N,"symbol":S},...}` sets S's depth."""
        try:
            result = json.loads(payload).get("result", {})
        except ValueError:
            self.counters[-1, Counter.DECODE_ERRORS] += 1
            return
        book = self._index.get(result.get("symbol"))
        if result.get("channel") == "book" and book is not None and isinstance(result.get("depth"), int):
            self._depths[book] = result["depth"]

    def _verified(self, book: int, ts_recv: int) -> bool:
        """True when the message carried no checksum or it matches; a mismatch invalidates the book."""
        expected = int(self._header[kraken.H_CHECKSUM])
        if expected < 0:
            return True
        if self.books.kraken_checksum(book, *self._pads[book]) != expected:
            self.counters[book, Counter.CHECKSUM_FAIL] += 1
            self._invalidate(book, Reason.CHECKSUM, ts_recv)
            return False
        self.counters[book, Counter.CHECKSUM_OK] += 1
        return True


class CoinbaseFeed(VenueFeed):
    """Coinbase books from either API. Advanced Trade: the l2_data snapshot event makes a book valid,
    updates follow, and every message's sequence_num must follow the last one of its connection; a
    jump invalidates every book that connection carries (they resubscribe). Exchange level2: a
    snapshot, then l2update changes (no sequence on that channel)."""

    CAPACITY = 65536  # full-depth snapshots: BTC-USD had 27k offers in 2026

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None):
        super().__init__(instruments, writer, capacity)
        self._events = np.zeros((coinbase.MAX_EVENTS, 4), np.int64)
        self._last_sequence: dict[int, int] = {}
        self._book_conn = [-1] * len(instruments)

    def on_frame(self, payload: bytes, ts_recv: int, conn: int = 0) -> None:
        self._count_frame(payload)
        self._fit_scratch(payload)
        buf = np.frombuffer(payload, np.uint8)
        header = self._header
        kind = coinbase.decode(buf, len(buf), self._symbols, self._lengths, self._px_decs, self._qty_decs,
                               self._sides, self._prices, self._qtys, header, self._events)
        if header[coinbase.H_SEQUENCE] >= 0:
            self._check_sequence(conn, int(header[coinbase.H_SEQUENCE]), ts_recv)
        if kind == coinbase.FRAME_L2:
            for instrument, is_snapshot, first, end in self._events[:int(header[coinbase.H_EVENTS])]:
                self._on_levels(int(instrument), bool(is_snapshot), int(first), int(end), conn, ts_recv)
        elif kind in (coinbase.FRAME_SNAPSHOT, coinbase.FRAME_UPDATE):
            self._on_levels(int(header[coinbase.H_INSTRUMENT]), kind == coinbase.FRAME_SNAPSHOT, 0,
                            int(header[coinbase.H_LEVELS]), conn, ts_recv)
        elif kind == coinbase.FRAME_MARKET_TRADES:
            self._trades(coinbase.decode_market_trades, payload, ts_recv)
        elif kind == coinbase.FRAME_TRADE:
            self._trade(int(header[coinbase.H_INSTRUMENT]), int(header[coinbase.H_TRADE_ID]),
                        int(header[coinbase.H_TIME]), ts_recv, int(header[coinbase.H_PRICE]),
                        int(header[coinbase.H_QTY]), int(header[coinbase.H_SIDE]))
        elif kind in (coinbase.FRAME_ERROR, coinbase.FRAME_UNKNOWN_SYMBOL):
            self.counters[-1, Counter.DECODE_ERRORS] += 1

    def _check_sequence(self, conn: int, sequence: int, ts_recv: int) -> None:
        last = self._last_sequence.get(conn)
        self._last_sequence[conn] = sequence
        if last is None or sequence == last + 1:
            return
        for book, book_conn in enumerate(self._book_conn):
            if book_conn == conn and self.sync[book].state == SyncState.LIVE:
                self.counters[book, Counter.GAPS] += 1
                self._status(book, Status.GAP, Reason.SEQUENCE_GAP, ts_recv)
                self._invalidate(book, Reason.SEQUENCE_GAP, ts_recv)

    def _on_levels(self, book: int, is_snapshot: bool, first: int, end: int, conn: int, ts_recv: int) -> None:
        sync = self.sync[book]
        if is_snapshot:
            self._load(book, self._sides[first:end], self._prices[first:end], self._qtys[first:end])
            self._book_conn[book] = conn
            if not self._crossed(book, ts_recv):
                self._went_live(book, 0, ts_recv)
                self._publish(book, 0, ts_recv, True)
            return
        if sync.state != SyncState.LIVE:
            return  # nothing to apply it to until the next snapshot
        self._apply(book, first, end)
        sync.update_id += 1  # neither API numbers book updates: count the ones applied
        if self._crossed(book, ts_recv):
            return
        self.counters[book, Counter.BOOK_UPDATES] += 1
        self._publish(book, 0, ts_recv, True)
