"""Reading the aggregator's NBBO segment `<prefix>.nbbo`: the same attach, seqlock and ring as a
venue segment (see shm.reader), with NBBO blocks and records.

    nbbo = NbboReader(prefix="fh")
    quote = nbbo.quote("BTC-USD")     # NbboQuote: best bid/ask over venues, who is at each, flags
    for event in nbbo.events().poll(): ...   # NbboEvent / VenueStatusEvent / GapEvent

Liveness is a venue segment's: an NBBO is valid only while the aggregator holds its writer lock and its
heartbeat (every 100 ms, changes or not) is at most `stale_after_s` old. The last NBBO of a dead or
stalled aggregator stays readable but is never valid, and no venue counts as included in it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .layout import (BOOK_LEVELS, BOOK_TS_PUBLISH, BOOK_TS_RECV, BOOK_UPDATE_ID, BOOK_VALID, NBBO_ASK_PX,
                     NBBO_ASK_QTY, NBBO_ASK_VENUES, NBBO_BID_PX, NBBO_BID_QTY, NBBO_BID_VENUES, NBBO_CROSSED,
                     NBBO_FLAGS, NBBO_INCLUDED, NBBO_LOCKED, NBBO_VENUE_WORDS, SLOT_ASK_PX, SLOT_ASK_QTY, SLOT_BID_PX,
                     SLOT_BID_QTY, SLOT_ID, SLOT_INSTRUMENT, SLOT_KIND, SLOT_NBBO_ASK_VENUES, SLOT_NBBO_BID_VENUES,
                     SLOT_NBBO_FLAGS, SLOT_NBBO_SOURCE_TS, SLOT_NBBO_SOURCE_VENUE, SLOT_SEQ, SLOT_STATUS,
                     SLOT_TS_PUBLISH, SLOT_TS_RECV, SLOT_VENUE, VQ_ASK_PX, VQ_ASK_QTY, VQ_BID_PX, VQ_BID_QTY,
                     VQ_STATE, VQ_TS_RECV, Kind, Reason, Status)
from .reader import MAX_SPINS, Event, Instrument, VenueReader
from .segment import SegmentError
from .seqlock import read_block


def _venues(mask: int, labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(label for v, label in enumerate(labels) if mask >> v & 1)


@dataclass(frozen=True)
class VenueQuote:
    venue: str
    included: bool
    reason: Reason  # why it is excluded (NONE when included; STALE: the aggregator is dead or stalled)
    bid_px: int
    bid_qty: int
    ask_px: int
    ask_qty: int
    age_ns: int  # since the venue received the frame behind this quote


@dataclass(frozen=True)
class NbboQuote:
    """One consistent NBBO of a symbol; prices and sizes are mantissas at the symbol's decimals."""

    instrument: Instrument
    valid: bool  # both sides quoted by at least one included venue, and the aggregator alive
    changes: int
    ts_recv: int
    ts_publish: int
    bid_px: int
    bid_qty: int  # summed over the venues at the best bid
    ask_px: int
    ask_qty: int
    bid_venues: tuple[str, ...]
    ask_venues: tuple[str, ...]
    locked: bool
    crossed: bool
    venues: tuple[VenueQuote, ...]


@dataclass(frozen=True)
class NbboEvent:
    position: int
    instrument: Instrument
    changes: int
    ts_recv: int  # the venue's receive time of the frame that caused it
    ts_publish: int
    source_ts_publish: int  # when the venue published that frame
    source_venue: str | None
    bid_px: int
    bid_qty: int
    ask_px: int
    ask_qty: int
    bid_venues: tuple[str, ...]
    ask_venues: tuple[str, ...]
    flags: int


@dataclass(frozen=True)
class VenueStatusEvent:
    position: int
    instrument: Instrument
    venue: str
    status: Status  # VENUE_EXCLUDED or VENUE_RESTORED
    reason: Reason
    ts_publish: int


class NbboReader(VenueReader):
    def __init__(self, prefix: str = "fh", directory: str | None = None, stale_after_s: float = 2.0,
                 writer_uid: int | None = None):
        super().__init__("nbbo", prefix, directory, stale_after_s, writer_uid=writer_uid)
        self.venue_names = self.segment.labels

    def quote(self, key: str | int) -> NbboQuote:
        """A consistent NBBO of one symbol; valid only while the aggregator is alive (see the module)."""
        instrument = self.instrument(key)
        block = self._block
        if read_block(self.segment.books[instrument.index], block, MAX_SPINS) < 0:
            raise SegmentError(f"nbbo:{instrument.symbol}: writer stuck inside a publish; is it alive?")
        alive = self.segment.writer_alive(self.stale_after_s)
        now = time.time_ns()
        labels = self.venue_names
        venues = []
        for v, name in enumerate(labels):
            row = block[BOOK_LEVELS + v * NBBO_VENUE_WORDS:BOOK_LEVELS + (v + 1) * NBBO_VENUE_WORDS]
            state = int(row[VQ_STATE])
            reason = Reason(-state) if state < 0 else Reason.NONE if alive or state == 0 else Reason.STALE
            venues.append(VenueQuote(name, state == 1 and alive, reason,
                                     int(row[VQ_BID_PX]), int(row[VQ_BID_QTY]), int(row[VQ_ASK_PX]),
                                     int(row[VQ_ASK_QTY]), now - int(row[VQ_TS_RECV]) if row[VQ_TS_RECV] else -1))
        flags = int(block[NBBO_FLAGS])
        return NbboQuote(instrument, bool(block[BOOK_VALID]) and alive, int(block[BOOK_UPDATE_ID]),
                         int(block[BOOK_TS_RECV]),
                         int(block[BOOK_TS_PUBLISH]), int(block[NBBO_BID_PX]), int(block[NBBO_BID_QTY]),
                         int(block[NBBO_ASK_PX]), int(block[NBBO_ASK_QTY]),
                         _venues(int(block[NBBO_BID_VENUES]), labels), _venues(int(block[NBBO_ASK_VENUES]), labels),
                         bool(flags & NBBO_LOCKED), bool(flags & NBBO_CROSSED), tuple(venues))

    def included(self, key: str | int) -> tuple[str, ...]:
        """The venues in the symbol's NBBO (none while the aggregator is dead or stalled)."""
        if not self.segment.writer_alive(self.stale_after_s):
            return ()
        return _venues(int(self.segment.books[self.instrument(key).index, NBBO_INCLUDED]), self.venue_names)

    def _event(self, row: np.ndarray) -> Event | NbboEvent | VenueStatusEvent:
        v = row.tolist()  # Python ints at once: indexing numpy scalars costs microseconds each
        kind = v[SLOT_KIND]
        if kind not in (Kind.NBBO, Kind.STATUS):
            return super()._event(row)
        position = v[SLOT_SEQ] - 1
        instrument = self.instruments[v[SLOT_INSTRUMENT]]
        labels = self.venue_names
        if kind == Kind.STATUS:
            venue = v[SLOT_VENUE]
            return VenueStatusEvent(position, instrument, labels[venue] if 0 <= venue < len(labels) else "?",
                                    Status(v[SLOT_STATUS]), Reason(v[SLOT_ID]),
                                    v[SLOT_TS_PUBLISH])
        source = v[SLOT_NBBO_SOURCE_VENUE]
        return NbboEvent(position, instrument, v[SLOT_ID], v[SLOT_TS_RECV], v[SLOT_TS_PUBLISH],
                         v[SLOT_NBBO_SOURCE_TS], labels[source] if 0 <= source < len(labels) else None,
                         v[SLOT_BID_PX], v[SLOT_BID_QTY], v[SLOT_ASK_PX], v[SLOT_ASK_QTY],
                         _venues(v[SLOT_NBBO_BID_VENUES], labels),
                         _venues(v[SLOT_NBBO_ASK_VENUES], labels), v[SLOT_NBBO_FLAGS])
