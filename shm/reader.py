"""The reader API for strategies: attach read-only to a venue segment, read consistent books, and
follow the event ring with explicit gap reporting. Needs nothing from the writer process.

Python:
    reader = VenueReader("binance", prefix="fh")
    book = reader.book("BTC-USDT")            # BookSnapshot: best first, exact integers
    cursor = reader.events()                 # from the live head
    for event in cursor.poll(): ...          # BookEvent / TradeEvent / StatusEvent / GapEvent, and on
                                             # derivatives venues BboEvent / FundingEvent /
                                             # OpenInterestEvent / LiquidationEvent
    stats = reader.stats("BTC-USDT-PERP")    # latest funding rate, mark, index, open interest

numba: pass `reader.books[i]`, `reader.ring`, `reader.ring_control` to the njit functions
`read_best`, `read_top`, `read_block` (shm.seqlock) and `poll` (shm.ring); they are re-exported here.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .fixedpoint import format_decimal
from .layout import (
    BOOK_DEPTH_ASKS, BOOK_DEPTH_BIDS, BOOK_LEVELS, BOOK_N_ASKS, BOOK_N_BIDS, BOOK_TS_EXCHANGE,
    BOOK_TS_PUBLISH, BOOK_TS_RECV, BOOK_UPDATE_ID, BOOK_VALID, SLOT_ASK_PX, SLOT_ASK_QTY, SLOT_BID_PX,
    SLOT_BID_QTY, SLOT_ID, SLOT_INSTRUMENT, SLOT_KIND, SLOT_MISSED, SLOT_N_ASKS, SLOT_N_BIDS, SLOT_SEQ,
    SLOT_STATUS, SLOT_TRADE_ASK_PX, SLOT_TRADE_ASK_QTY, SLOT_TRADE_BID_PX, SLOT_TRADE_BID_QTY, SLOT_TRADE_BOOK_ID,
    SLOT_TRADE_PX, SLOT_TRADE_QTY, SLOT_TRADE_SIDE, SLOT_TRADE_SWEPT, SLOT_TS_EXCHANGE, SLOT_TS_PUBLISH, SLOT_TS_RECV, SLOT_WORDS, Counter, Kind, Reason, Side, State, Status, asks_at,
    BOOK_FUNDING_RATE, BOOK_FUNDING_TIME, BOOK_INDEX_PX, BOOK_MARK_PX, BOOK_OPEN_INTEREST, BOOK_STATS_FIELDS,
    BOOK_STATS_TS, FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_OPEN_INTEREST, FIELD_RATE, RATE_DEC,
    SLOT_FIELDS, SLOT_FUNDING_RATE, SLOT_FUNDING_TIME, SLOT_INDEX_PX, SLOT_LIQ_PX, SLOT_LIQ_QTY, SLOT_LIQ_SIDE,
    SLOT_LIQ_VENUE_SIDE, SLOT_MARK_PX, SLOT_OPEN_INTEREST, stats_px_dec,
)
from .ring import poll, write_position
from .segment import Segment, SegmentError
from .seqlock import read_best, read_block, read_top

__all__ = ["VenueReader", "EventCursor", "counter_totals", "Instrument", "BookSnapshot", "BookEvent", "TradeEvent",
           "StatusEvent", "GapEvent", "BboEvent", "FundingEvent", "OpenInterestEvent", "LiquidationEvent",
           "MarketStats", "funding_rate", "FIELD_RATE", "FIELD_FUNDING_TIME", "FIELD_MARK", "FIELD_INDEX",
           "FIELD_OPEN_INTEREST", "read_best", "read_top", "read_block", "poll", "write_position"]

MAX_SPINS = 1_000_000  # a writer never holds the seqlock this long unless it died inside it


@dataclass(frozen=True)
class Instrument:
    index: int
    venue_symbol: str
    symbol: str  # normalized BASE-QUOTE
    px_dec: int
    qty_dec: int
    capacity: int
    size_ccy: str = ""  # a quantity unit is worth size_mant * 10**-size_dec of this (base, or quote for inverse)
    size_mant: int = 1
    size_dec: int = 0

    def size(self, mantissa: int) -> Decimal:
        """A quantity in the instrument's size unit (size_ccy): contracts times the contract's size, exact."""
        return self.qty(mantissa) * self.size_mant / Decimal(10) ** self.size_dec

    def price_text(self, mantissa: int) -> str:
        return format_decimal(mantissa, self.px_dec)

    def qty_text(self, mantissa: int) -> str:
        return format_decimal(mantissa, self.qty_dec)

    def price(self, mantissa: int) -> Decimal:
        return Decimal(self.price_text(mantissa))

    def qty(self, mantissa: int) -> Decimal:
        return Decimal(self.qty_text(mantissa))

    @property
    def stats_px_dec(self) -> int:
        """Decimals of this instrument's mark, index and liquidation prices (layout.stats_px_dec)."""
        return stats_px_dec(self.px_dec)

    def stats_price(self, mantissa: int) -> Decimal:
        """A mark, index or liquidation price as an exact Decimal."""
        return Decimal(format_decimal(mantissa, self.stats_px_dec))


@dataclass(frozen=True)
class BookSnapshot:
    """One consistent image of a published book. Prices and quantities are int64 mantissas at the
    instrument's decimals; `bids`/`asks` are (n, 2) [price, qty] rows, best first."""

    instrument: Instrument
    valid: bool
    update_id: int
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    n_bids: int  # levels in the writer's full book; `bids` holds the published top
    n_asks: int
    bids: np.ndarray
    asks: np.ndarray

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self._level(self.bids)

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self._level(self.asks)

    def _level(self, rows: np.ndarray) -> tuple[Decimal, Decimal] | None:
        if not len(rows):
            return None
        return self.instrument.price(int(rows[0, 0])), self.instrument.qty(int(rows[0, 1]))

    def levels_text(self, side: str) -> list[list[str]]:
        """[[price, qty], ...] as exact decimal strings, `side` 'bids' or 'asks'."""
        rows = self.bids if side == "bids" else self.asks
        return [[self.instrument.price_text(int(p)), self.instrument.qty_text(int(q))] for p, q in rows]


@dataclass(frozen=True)
class BookEvent:
    position: int
    instrument: Instrument
    update_id: int
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    bid_px: int
    bid_qty: int  # 0: no bid
    ask_px: int
    ask_qty: int  # 0: no ask
    n_bids: int
    n_asks: int


@dataclass(frozen=True)
class TradeEvent:
    position: int
    instrument: Instrument
    trade_id: int
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    price: int
    qty: int
    side: Side  # the aggressor
    # the venue's book just before the trade, in feed order (mantissas at the instrument's decimals)
    bid_px: int
    bid_qty: int  # 0: no bid
    ask_px: int
    ask_qty: int  # 0: no ask
    swept: int  # levels of the side it hit at or through its price; NO_BOOK (-1): the book was not valid
    book_update_id: int


@dataclass(frozen=True)
class StatusEvent:
    position: int
    instrument: Instrument | None  # None: the whole venue
    status: Status
    reason: Reason
    ts_exchange: int
    ts_recv: int
    ts_publish: int


def funding_rate(mantissa: int) -> Decimal:
    """A funding rate's fixed point (RATE_DEC decimals) as an exact Decimal."""
    return Decimal(format_decimal(mantissa, RATE_DEC))


@dataclass(frozen=True)
class BboEvent:
    """The venue's own best bid/offer channel (Binance bookTicker, OKX bbo-tbt, Bybit orderbook.1)."""

    position: int
    instrument: Instrument
    update_id: int
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    bid_px: int
    bid_qty: int  # 0: no bid
    ask_px: int
    ask_qty: int  # 0: no ask


@dataclass(frozen=True)
class FundingEvent:
    """A perpetual's funding state: what this message carried (`fields`, FIELD_* bits), the rest as
    last sent. rate: RATE_DEC decimals (funding_rate() for a Decimal); mark and index:
    instrument.stats_px_dec decimals (instrument.stats_price() for a Decimal)."""

    position: int
    instrument: Instrument
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    rate: int
    next_funding_ns: int
    mark_px: int
    index_px: int
    fields: int


@dataclass(frozen=True)
class OpenInterestEvent:
    position: int
    instrument: Instrument
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    open_interest: int  # the instrument's quantity unit: contracts where the venue counts contracts


@dataclass(frozen=True)
class LiquidationEvent:
    position: int
    instrument: Instrument
    ts_exchange: int
    ts_recv: int
    ts_publish: int
    price: int  # instrument.stats_px_dec decimals
    qty: int
    side: Side  # the liquidation order's side: a liquidated long is a SELL
    venue_side: Side  # as the venue sent it (Bybit: the side of the position liquidated)


@dataclass(frozen=True)
class MarketStats:
    """An instrument's latest derivatives stats (0 where the venue has not sent one: see `fields`)."""

    instrument: Instrument
    funding_rate: int  # RATE_DEC decimals
    next_funding_ns: int
    mark_px: int  # instrument.stats_px_dec decimals
    index_px: int
    open_interest: int
    ts_exchange: int  # of the last stats message
    fields: int  # FIELD_* bits received so far
    fresh: bool  # the writer is alive: these are current

    def has(self, field: int) -> bool:
        return bool(self.fields & field)


@dataclass(frozen=True)
class GapEvent:
    """This reader fell a full ring behind: `missed` records are lost to it. Re-read the books."""

    position: int  # where reading resumed
    missed: int


Event = (BookEvent | TradeEvent | StatusEvent | GapEvent | BboEvent | FundingEvent | OpenInterestEvent
         | LiquidationEvent)


def counter_totals(counters: np.ndarray) -> dict[str, int]:
    """A segment's counters (rows: instruments, then the venue) summed over every row, by name."""
    totals = counters.sum(axis=0)
    return {c.name.lower(): int(totals[c]) for c in Counter}


class EventCursor:
    """A private read position in a venue's ring. The writer never waits for it."""

    def __init__(self, reader: VenueReader, position: int, batch: int = 256):
        self._reader = reader
        self._cursor = np.array([position, 0], np.int64)
        self._rows = np.zeros((batch, SLOT_WORDS), np.int64)

    @property
    def position(self) -> int:
        return int(self._cursor[0])

    @property
    def missed(self) -> int:
        """Records lost to laps since this cursor started."""
        return int(self._cursor[1])

    def poll(self) -> list[Event]:
        """Whatever has been published since the last call (up to the batch size), in order."""
        segment = self._reader.segment
        filled = poll(segment.ring, segment.ring_control, self._cursor, self._rows)
        return [self._reader._event(row) for row in self._rows[:filled]]

    def follow(self, timeout_s: float, idle_sleep_s: float = 0.0002) -> Iterator[Event]:
        """Yield events as they arrive until `timeout_s` passes with nothing new."""
        quiet_since = time.monotonic()
        while True:
            events = self.poll()
            if events:
                quiet_since = time.monotonic()
                yield from events
            elif time.monotonic() - quiet_since > timeout_s:
                return
            else:
                time.sleep(idle_sleep_s)


def _instrument(path: str, index: int, row: np.void) -> Instrument:
    try:
        return Instrument(index, row["venue_symbol"].decode(), row["symbol"].decode(), int(row["px_dec"]),
                          int(row["qty_dec"]), int(row["capacity"]), row["size_ccy"].decode(),
                          int(row["size_mant"]), int(row["size_dec"]))
    except UnicodeDecodeError:
        raise SegmentError(f"{path}: instrument {index} has a symbol that is not UTF-8") from None


class VenueReader:
    """Read-only access to one venue's segment `<prefix>.<venue>`."""

    def __init__(self, venue: str, prefix: str = "fh", directory: str | None = None, stale_after_s: float = 2.0,
                 writer_uid: int | None = None):
        """Attach to `<prefix>.<venue>`; only a segment of `writer_uid` (default $FH_SHM_WRITER_UID or
        our own uid) is trusted, anything else is a SegmentError."""
        self.segment = Segment(prefix, venue, directory, writer_uid)
        self.stale_after_s = stale_after_s  # a writer silent this long (or gone) has no valid books
        try:
            self.instruments = [_instrument(self.segment.path, i, row) for i, row in enumerate(self.segment.instruments)]
        except SegmentError:
            self.segment.close()
            raise
        self._by_name = {}
        for instrument in self.instruments:
            self._by_name.setdefault(instrument.symbol, instrument)
            self._by_name.setdefault(instrument.venue_symbol, instrument)
        self._block = np.zeros(self.segment.geometry.block_words, np.int64)

    @property
    def venue(self) -> str:
        return self.segment.name

    @property
    def books(self) -> np.ndarray:
        """int64 (instruments, block words), read-only: one seqlock block per instrument."""
        return self.segment.books

    @property
    def ring(self) -> np.ndarray:
        return self.segment.ring

    @property
    def ring_control(self) -> np.ndarray:
        return self.segment.ring_control

    def instrument(self, key: str | int) -> Instrument:
        """By index, normalized symbol (BTC-USDT) or venue symbol (BTCUSDT)."""
        if isinstance(key, int):
            if not 0 <= key < len(self.instruments):
                raise KeyError(f"{self.venue}: no instrument #{key} (have {len(self.instruments)})")
            return self.instruments[key]
        try:
            return self._by_name[key]
        except KeyError:
            known = ", ".join(i.symbol for i in self.instruments)
            raise KeyError(f"{self.venue}: unknown instrument {key!r}; known: {known}") from None

    def book(self, key: str | int, depth: int | None = None) -> BookSnapshot:
        """A consistent snapshot of one book (its published top, or the best `depth` levels). It is
        valid only while its writer is alive: a dead or stalled writer's last book is stale, never
        valid (numba users of read_best/read_top check `segment.writer_alive` themselves)."""
        instrument = self.instrument(key)
        block = self._block
        if read_block(self.segment.books[instrument.index], block, MAX_SPINS) < 0:
            raise SegmentError(f"{self.venue}:{instrument.symbol}: writer stuck inside a publish "
                               f"(state {self.segment.state.name}); is it alive?")
        book_depth = self.segment.geometry.depth
        depth = book_depth if depth is None else min(depth, book_depth)
        n_bids = min(depth, int(block[BOOK_DEPTH_BIDS]))
        n_asks = min(depth, int(block[BOOK_DEPTH_ASKS]))
        first_ask = asks_at(book_depth)
        return BookSnapshot(
            instrument=instrument, valid=bool(block[BOOK_VALID]) and self.segment.writer_alive(self.stale_after_s),
            update_id=int(block[BOOK_UPDATE_ID]),
            ts_exchange=int(block[BOOK_TS_EXCHANGE]), ts_recv=int(block[BOOK_TS_RECV]),
            ts_publish=int(block[BOOK_TS_PUBLISH]), n_bids=int(block[BOOK_N_BIDS]),
            n_asks=int(block[BOOK_N_ASKS]),
            bids=block[BOOK_LEVELS:BOOK_LEVELS + 2 * n_bids].reshape(n_bids, 2).copy(),
            asks=block[first_ask:first_ask + 2 * n_asks].reshape(n_asks, 2).copy(),
        )

    def stats(self, key: str | int) -> MarketStats:
        """The instrument's latest funding, mark/index price and open interest, read consistently."""
        instrument = self.instrument(key)
        block = self._block
        if read_block(self.segment.books[instrument.index], block, MAX_SPINS) < 0:
            raise SegmentError(f"{self.venue}:{instrument.symbol}: writer stuck inside a publish "
                               f"(state {self.segment.state.name}); is it alive?")
        v = block.tolist()
        return MarketStats(instrument, v[BOOK_FUNDING_RATE], v[BOOK_FUNDING_TIME], v[BOOK_MARK_PX], v[BOOK_INDEX_PX],
                           v[BOOK_OPEN_INTEREST], v[BOOK_STATS_TS], v[BOOK_STATS_FIELDS],
                           self.segment.writer_alive(self.stale_after_s))

    def events(self, start: str = "live", batch: int = 256) -> EventCursor:
        """A cursor from the live head (`live`) or from the oldest record still in the ring (`oldest`)."""
        head = int(write_position(self.segment.ring_control))
        if start == "live":
            position = head
        elif start == "oldest":
            position = max(0, head - self.segment.geometry.ring_slots)
        else:
            raise ValueError(f"start must be 'live' or 'oldest', not {start!r}")
        return EventCursor(self, position, batch)

    def counters(self, key: str | int | None = None) -> dict[str, int]:
        """Counters of one instrument, or of the venue connection(s) when `key` is None."""
        row = self.segment.counters[-1 if key is None else self.instrument(key).index]
        return {c.name.lower(): int(row[c]) for c in Counter}

    def totals(self) -> dict[str, int]:
        """Every counter summed over the venue and all its instruments."""
        return counter_totals(self.segment.counters)

    def status(self) -> dict[str, object]:
        segment = self.segment
        return {"venue": self.venue, "state": segment.state.name.lower(), "writer_pid": segment.writer_pid,
                "writer_alive": segment.writer_alive(), "heartbeat_age_s": segment.heartbeat_age_s()}

    @property
    def replaced(self) -> bool:
        """True once a new writer took over the name: attach again to follow it."""
        return self.segment.state == State.REPLACED

    def close(self) -> None:
        self.segment.close()

    def __enter__(self) -> VenueReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _event(self, row: np.ndarray) -> Event:
        v = row.tolist()  # Python ints at once: indexing numpy scalars costs microseconds each
        kind = v[SLOT_KIND]
        position = v[SLOT_SEQ] - 1
        if kind == Kind.READER_GAP:
            return GapEvent(position, v[SLOT_MISSED])
        index = v[SLOT_INSTRUMENT]
        instrument = self.instruments[index] if 0 <= index < len(self.instruments) else None
        stamps = v[SLOT_TS_EXCHANGE], v[SLOT_TS_RECV], v[SLOT_TS_PUBLISH]
        if kind == Kind.BOOK:
            return BookEvent(position, instrument, v[SLOT_ID], *stamps, v[SLOT_BID_PX],
                             v[SLOT_BID_QTY], v[SLOT_ASK_PX], v[SLOT_ASK_QTY],
                             v[SLOT_N_BIDS], v[SLOT_N_ASKS])
        if kind == Kind.TRADE:
            return TradeEvent(position, instrument, v[SLOT_ID], *stamps, v[SLOT_TRADE_PX],
                              v[SLOT_TRADE_QTY], Side(v[SLOT_TRADE_SIDE]), v[SLOT_TRADE_BID_PX],
                              v[SLOT_TRADE_BID_QTY], v[SLOT_TRADE_ASK_PX],
                              v[SLOT_TRADE_ASK_QTY], v[SLOT_TRADE_SWEPT], v[SLOT_TRADE_BOOK_ID])
        if kind == Kind.STATUS:
            return StatusEvent(position, instrument, Status(v[SLOT_STATUS]), Reason(v[SLOT_ID]),
                               *stamps)
        if kind == Kind.BBO:
            return BboEvent(position, instrument, v[SLOT_ID], *stamps, v[SLOT_BID_PX], v[SLOT_BID_QTY],
                            v[SLOT_ASK_PX], v[SLOT_ASK_QTY])
        if kind == Kind.FUNDING:
            return FundingEvent(position, instrument, *stamps, v[SLOT_FUNDING_RATE], v[SLOT_FUNDING_TIME],
                                v[SLOT_MARK_PX], v[SLOT_INDEX_PX], v[SLOT_FIELDS])
        if kind == Kind.OPEN_INTEREST:
            return OpenInterestEvent(position, instrument, *stamps, v[SLOT_OPEN_INTEREST])
        if kind == Kind.LIQUIDATION:
            return LiquidationEvent(position, instrument, *stamps, v[SLOT_LIQ_PX], v[SLOT_LIQ_QTY],
                                    Side(v[SLOT_LIQ_SIDE]), Side(v[SLOT_LIQ_VENUE_SIDE]))
        raise SegmentError(f"{self.venue}: ring record of unknown kind {kind} at position {position}")
