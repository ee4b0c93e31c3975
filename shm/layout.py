"""Byte layout of a segment: header words, instrument table, book blocks, ring slots, counters.

Every region starts on a 64-byte boundary and its offset and size are in the header, so a reader
validates a segment before trusting anything in it. All numeric words are little-endian int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numba import njit

MAGIC = int.from_bytes(b"FHSHMSEG", "little")
LAYOUT_VERSION = 3  # 2: writer lineage and a monotonic heartbeat in the header; 3: derivatives records, stats, size units
ALIGN = 64
WORD = 8

# Header: int64 words, then the segment name as UTF-8 in bytes [HEADER_NAME_AT, HEADER_BYTES).
HEADER_BYTES = 512
HEADER_NAME_AT = 256
HEADER_NAME_BYTES = HEADER_BYTES - HEADER_NAME_AT


class Header(IntEnum):
    MAGIC = 0
    VERSION = 1
    SIZE = 2
    STATE = 3
    WRITER_PID = 4
    START_NS = 5
    HEARTBEAT_NS = 6
    N_INSTRUMENTS = 7
    DEPTH = 8
    BLOCK_WORDS = 9
    RING_SLOTS = 10
    SLOT_WORDS = 11
    N_COUNTERS = 12
    INSTRUMENTS_OFF = 13
    INSTRUMENTS_SIZE = 14
    BOOKS_OFF = 15
    BOOKS_SIZE = 16
    RING_OFF = 17
    RING_SIZE = 18
    COUNTERS_OFF = 19
    COUNTERS_SIZE = 20
    # The writers of one name form a lineage while each finds its predecessor's file (not across a
    # reboot): a sink that acknowledged up to some record of an earlier writer counts exactly what
    # it missed, however many writers came between.
    LINEAGE_NS = 21  # START_NS of the lineage's first writer
    LINEAGE_BASE = 22  # records the lineage's earlier writers published, all together
    PREV_START_NS = 23  # START_NS of the writer this one replaced (0: none)
    HEARTBEAT_MONO_NS = 24  # the heartbeat on CLOCK_MONOTONIC (system-wide): ages on one host, immune to clock steps


class State(IntEnum):
    INITIALIZING = 0
    OPEN = 1
    CLOSED = 2  # the writer shut down cleanly; the last books stay readable
    REPLACED = 3  # a new writer took over the name; re-attach to follow it


INSTRUMENT_DTYPE = np.dtype([
    ("venue_symbol", "S32"),
    ("symbol", "S32"),
    ("px_dec", "<i4"),
    ("qty_dec", "<i4"),
    ("capacity", "<i8"),
    # One unit of quantity is worth size_mant * 10**-size_dec of size_ccy: 1 base unit on spot, a
    # contract's size on a derivative (base for linear contracts, the quote currency for inverse ones).
    # The NBBO adds venues' sizes in this unit, so it is the same for every venue of a symbol.
    ("size_mant", "<i8"),
    ("size_dec", "<i4"),
    ("size_ccy", "S16"),
])

# Book block: one per instrument, guarded by a seqlock (SEQ odd while the writer is inside). SEQ
# has a cache line to itself (with the constant MAX_DEPTH) so that readers polling it do not pull
# the data lines away from the writer while it fills them.
BOOK_SEQ = 0
BOOK_MAX_DEPTH = 1  # levels per side this block has room for; set once at creation
BOOK_UPDATE_ID = 8
BOOK_TS_EXCHANGE = 9
BOOK_TS_RECV = 10
BOOK_TS_PUBLISH = 11
BOOK_VALID = 12
BOOK_N_BIDS = 13  # levels in the writer's full book
BOOK_N_ASKS = 14
BOOK_DEPTH_BIDS = 15  # levels published below (<= MAX_DEPTH)
BOOK_DEPTH_ASKS = 16
# The instrument's latest derivatives stats (0 until the venue sent one), each written with the record
# that carries it (Kind.FUNDING, Kind.OPEN_INTEREST) under the same seqlock: a reader's latest values.
BOOK_FUNDING_RATE = 17  # RATE_DEC decimals
BOOK_FUNDING_TIME = 18  # ns: when the rate is next paid
BOOK_MARK_PX = 19  # stats_px_dec(px_dec) decimals
BOOK_INDEX_PX = 20
BOOK_OPEN_INTEREST = 21  # the instrument's quantity unit and decimals (contracts where the venue counts them)
BOOK_STATS_TS = 22  # exchange time of the last stats record (ns)
BOOK_STATS_FIELDS = 23  # FIELD_* bits of the stats received so far
BOOK_LEVELS = 24  # bids [price, qty] * depth, then asks [price, qty] * depth, best first

# Ring: a control line (the count of records published), then slots of SLOT_WORDS int64 words.
RING_CONTROL_WORDS = ALIGN // WORD
RING_WRITE_POS = 0
SLOT_WORDS = 16
SLOT_SEQ = 0  # position + 1, stored last with release; anything else means not (yet) that record
SLOT_KIND = 1
SLOT_INSTRUMENT = 2
SLOT_ID = 3  # book update id, trade id, or status reason
SLOT_TS_EXCHANGE = 4
SLOT_TS_RECV = 5
SLOT_TS_PUBLISH = 6
# book change
SLOT_BID_PX = 7
SLOT_BID_QTY = 8
SLOT_ASK_PX = 9
SLOT_ASK_QTY = 10
SLOT_N_BIDS = 11
SLOT_N_ASKS = 12
# trade
SLOT_TRADE_PX = 7
SLOT_TRADE_QTY = 8
SLOT_TRADE_SIDE = 9
# trade matched to its venue's book just before it (the writer's book, in feed order)
SLOT_TRADE_BID_PX = 10
SLOT_TRADE_BID_QTY = 11  # 0: no bid
SLOT_TRADE_ASK_PX = 12
SLOT_TRADE_ASK_QTY = 13  # 0: no ask
SLOT_TRADE_SWEPT = 14  # levels of the side it hit at or through its price; NO_BOOK: the book was not valid
SLOT_TRADE_BOOK_ID = 15  # the book's update id at that moment
NO_BOOK = -1
# best bid/offer from the venue's top-of-book channel: words 7-10 as a book change; SLOT_ID its update id
# funding: what the venue sent in this message (SLOT_FIELDS), the rest as last sent (BOOK_* stats)
SLOT_FUNDING_RATE = 7  # RATE_DEC decimals
SLOT_FUNDING_TIME = 8  # ns: when this rate is next paid
SLOT_MARK_PX = 9  # mark and index: stats_px_dec(px_dec) decimals
SLOT_INDEX_PX = 10
SLOT_FIELDS = 11  # FIELD_* bits: the values this message carried
FIELD_RATE = 1
FIELD_FUNDING_TIME = 2
FIELD_MARK = 4
FIELD_INDEX = 8
FIELD_OPEN_INTEREST = 16
RATE_DEC = 18  # a funding rate's decimals: exact for every venue's text, |rate| < 9.2
# Mark, index and liquidation prices are not on the tick grid (an index is an average of venues' prices,
# a liquidation's price the average of its fills; Binance prints them to 8 decimals): they are kept
# at stats_px_dec(px_dec) decimals, exact for every venue's text.
STATS_MIN_DEC = 8
# open interest: in the instrument's quantity unit and decimals
SLOT_OPEN_INTEREST = 7
# liquidation
SLOT_LIQ_PX = 7  # stats_px_dec(px_dec) decimals
SLOT_LIQ_QTY = 8
SLOT_LIQ_SIDE = 9  # the liquidation order's side: a liquidated long is a SELL
SLOT_LIQ_VENUE_SIDE = 10  # the side as the venue sent it (Bybit: the liquidated position's side)
# status
SLOT_STATUS = 7
# reader-side gap marker (never written to shared memory): records skipped
SLOT_MISSED = 3
# NBBO change (words 7-10 as a book change: best bid px, qty, best ask px, qty)
SLOT_NBBO_BID_VENUES = 11  # bit v: venue label v is at the best bid
SLOT_NBBO_ASK_VENUES = 12
SLOT_NBBO_FLAGS = 13
SLOT_NBBO_SOURCE_TS = 14  # ts_publish of the venue record that caused this change
SLOT_NBBO_SOURCE_VENUE = 15
# status in an NBBO ring: a venue excluded from / restored to a symbol's NBBO
SLOT_VENUE = 8

# An NBBO segment uses the same geometry: an instrument is a normalized symbol (both symbol columns),
# its block carries the NBBO in the words below and, from BOOK_LEVELS on, one NBBO_VENUE_WORDS row
# per venue (the venue's top of book rescaled to the symbol's decimals). Venue v is label v of the
# segment. Block words 8-12 mean what they mean in a book block (update id = NBBO change count).
NBBO_BID_PX = 13
NBBO_BID_QTY = 14
NBBO_ASK_PX = 15
NBBO_ASK_QTY = 16
NBBO_BID_VENUES = 17
NBBO_ASK_VENUES = 18
NBBO_FLAGS = 19
NBBO_INCLUDED = 20  # bit v: venue v is part of this NBBO (valid, fresh, connected)
NBBO_VENUE_WORDS = 8
VQ_BID_PX = 0
VQ_BID_QTY = 1
VQ_ASK_PX = 2
VQ_ASK_QTY = 3
VQ_TS_RECV = 4
VQ_STATE = 5  # 1 included, else minus the Reason it is excluded for (0: never quoted)
VQ_UPDATE_ID = 6
VQ_TS_PUBLISH = 7
NBBO_LOCKED = 1
NBBO_CROSSED = 2


class Kind(IntEnum):
    BOOK = 1
    TRADE = 2
    STATUS = 3
    READER_GAP = 4  # synthesised by a reader that was lapped, never in the ring itself
    NBBO = 5
    BBO = 6
    FUNDING = 7
    OPEN_INTEREST = 8
    LIQUIDATION = 9


STATS_KINDS = (Kind.BBO, Kind.FUNDING, Kind.OPEN_INTEREST, Kind.LIQUIDATION)  # a venue's market records


class Side(IntEnum):
    UNKNOWN = 0
    BUY = 1
    SELL = -1


class Status(IntEnum):
    BOOK_VALID = 1
    BOOK_INVALID = 2
    GAP = 3
    RESYNC = 4
    CONNECT = 5
    DISCONNECT = 6
    VENUE_EXCLUDED = 7  # NBBO rings: SLOT_VENUE left the symbol's NBBO, SLOT_ID says why
    VENUE_RESTORED = 8
    CAPTURE_STOPPED = 9  # the venue's capture file could not be written; the feed goes on without it
    CAPTURE_RESUMED = 10  # capturing again, to a new file


class Reason(IntEnum):
    NONE = 0
    SNAPSHOT = 1
    SEQUENCE_GAP = 2
    CHECKSUM = 3
    CROSSED = 4
    DISCONNECTED = 5
    STALE = 6
    DECODE_ERROR = 7
    SHUTDOWN = 8
    NO_QUOTE = 9  # valid but empty on a side
    CAPTURE_ERROR = 10  # a capture write failed (disk full, file too large, I/O error)


class Counter(IntEnum):
    FRAMES = 0
    BYTES = 1
    DECODE_ERRORS = 2
    BOOK_UPDATES = 3
    TRADES = 4
    GAPS = 5
    RESYNCS = 6
    CHECKSUM_OK = 7
    CHECKSUM_FAIL = 8
    CROSSED = 9
    ABSENT_DELETES = 10
    BOOK_OVERFLOW = 11
    CAPTURE_ERRORS = 12  # venue row only: capture writes that failed
    BBOS = 13
    FUNDINGS = 14
    OPEN_INTERESTS = 15
    LIQUIDATIONS = 16


COUNTER_OF_KIND = {Kind.BBO: Counter.BBOS, Kind.FUNDING: Counter.FUNDINGS, Kind.OPEN_INTEREST: Counter.OPEN_INTERESTS,
                   Kind.LIQUIDATION: Counter.LIQUIDATIONS}
N_COUNTERS = 24


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def stats_px_dec(px_dec: int) -> int:
    """Decimals of an instrument's mark, index and liquidation prices (njit and Python)."""
    return max(px_dec, STATS_MIN_DEC)


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def asks_at(depth: int) -> int:
    """Word index of the first ask level in a block of `depth` levels per side (njit and Python)."""
    return BOOK_LEVELS + 2 * depth


def block_words(depth: int) -> int:
    """int64 words of one book block at `depth` levels per side, a whole number of cache lines."""
    return _aligned((BOOK_LEVELS + 4 * depth) * WORD) // WORD


@dataclass(frozen=True)
class Geometry:
    """Where every region of a segment lives; derived from three numbers, checked on attach."""

    n_instruments: int
    depth: int
    ring_slots: int

    def __post_init__(self) -> None:
        if self.n_instruments < 1:
            raise ValueError("a segment needs at least one instrument")
        if not 1 <= self.depth <= 100_000:
            raise ValueError(f"book depth must be in 1..100000, got {self.depth}")
        if self.ring_slots < 2 or self.ring_slots & (self.ring_slots - 1):
            raise ValueError(f"ring slots must be a power of two >= 2, got {self.ring_slots}")

    @property
    def block_words(self) -> int:
        return block_words(self.depth)

    @property
    def instruments_off(self) -> int:
        return HEADER_BYTES

    @property
    def instruments_size(self) -> int:
        return _aligned(self.n_instruments * INSTRUMENT_DTYPE.itemsize)

    @property
    def books_off(self) -> int:
        return self.instruments_off + self.instruments_size

    @property
    def books_size(self) -> int:
        return self.n_instruments * self.block_words * WORD

    @property
    def ring_off(self) -> int:
        return self.books_off + self.books_size

    @property
    def ring_size(self) -> int:
        return (RING_CONTROL_WORDS + self.ring_slots * SLOT_WORDS) * WORD

    @property
    def counters_off(self) -> int:
        return self.ring_off + self.ring_size

    @property
    def counters_size(self) -> int:
        return (self.n_instruments + 1) * N_COUNTERS * WORD

    @property
    def size(self) -> int:
        return self.counters_off + self.counters_size

    def header_words(self) -> dict[Header, int]:
        return {
            Header.MAGIC: MAGIC, Header.VERSION: LAYOUT_VERSION, Header.SIZE: self.size,
            Header.N_INSTRUMENTS: self.n_instruments, Header.DEPTH: self.depth,
            Header.BLOCK_WORDS: self.block_words, Header.RING_SLOTS: self.ring_slots,
            Header.SLOT_WORDS: SLOT_WORDS, Header.N_COUNTERS: N_COUNTERS,
            Header.INSTRUMENTS_OFF: self.instruments_off, Header.INSTRUMENTS_SIZE: self.instruments_size,
            Header.BOOKS_OFF: self.books_off, Header.BOOKS_SIZE: self.books_size,
            Header.RING_OFF: self.ring_off, Header.RING_SIZE: self.ring_size,
            Header.COUNTERS_OFF: self.counters_off, Header.COUNTERS_SIZE: self.counters_size,
        }
