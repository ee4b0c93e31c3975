"""What the sinks deliver: one record shape per kind, built from ring rows and book blocks.

Every record is a plain dict carrying `v` (SCHEMA_VERSION), `type`, `ring` (the segment it came from:
a venue or `nbbo`), `epoch` (that ring's writer start time: positions of another writer mean nothing)
and `seq` (its ring position); (ring, epoch, seq) is the dedup key. Prices and sizes are exact int64
mantissas with their decimals (`px_dec`, `qty_dec`); timestamps are ns since the epoch.

    book    top-N snapshot of one venue book (conflatable: `seq` is the last change it covers,
            `changes` how many ring changes it stands for; `periodic` when not caused by a change)
    trade   a trade and its venue book just before it; `nbbo_*` the NBBO when the sink handled it
    nbbo    an NBBO change of a symbol
    status  a book or venue status change (and VENUE_EXCLUDED / VENUE_RESTORED from the NBBO ring)
    gap     records this sink will never deliver: `missed` of them (-1: unknown) before `seq`
"""
from __future__ import annotations

from shm.layout import NO_BOOK, Reason, Side, Status
from shm.nbbo_reader import NbboReader
from shm.reader import BookSnapshot, Instrument, StatusEvent, TradeEvent

SCHEMA_VERSION = 1
BOOK, TRADE, NBBO, STATUS, GAP = "book", "trade", "nbbo", "status", "gap"

_SIDES = {Side.BUY: "buy", Side.SELL: "sell", Side.UNKNOWN: "unknown"}


def dedup_key(record: dict) -> tuple[str, int, int]:
    return record["ring"], record["epoch"], record["seq"]


def partition_key(record: dict) -> bytes:
    """venue:symbol (NBBO: the symbol), so that each book's records stay in order in one partition."""
    if record["type"] == NBBO or record["ring"] == "nbbo":
        return (record.get("symbol") or "").encode()
    return f"{record['venue']}:{record.get('symbol') or ''}".encode()


def _base(kind: str, ring: str, epoch: int, seq: int) -> dict:
    return {"v": SCHEMA_VERSION, "type": kind, "ring": ring, "epoch": epoch, "seq": seq}


def book_record(ring: str, epoch: int, seq: int, changes: int, book: BookSnapshot, periodic: bool) -> dict:
    instrument = book.instrument
    record = _base(BOOK, ring, epoch, seq)
    record.update(venue=ring, symbol=instrument.symbol, px_dec=instrument.px_dec, qty_dec=instrument.qty_dec,
                  update_id=book.update_id, valid=book.valid, changes=changes, periodic=periodic,
                  ts_exchange=book.ts_exchange, ts_recv=book.ts_recv, ts_publish=book.ts_publish,
                  bids=book.bids.tolist(), asks=book.asks.tolist())
    return record


def trade_record(ring: str, epoch: int, event: TradeEvent, nbbo: NbboReader | None) -> dict:
    """A trade joined with its venue book just before it (from the writer) and the NBBO now."""
    instrument = event.instrument
    record = _base(TRADE, ring, epoch, event.position)
    book_ok = event.swept != NO_BOOK and event.bid_qty != 0 and event.ask_qty != 0
    record.update(
        venue=ring, symbol=instrument.symbol, px_dec=instrument.px_dec, qty_dec=instrument.qty_dec,
        trade_id=event.trade_id, price=event.price, qty=event.qty, side=_SIDES[event.side],
        ts_exchange=event.ts_exchange, ts_recv=event.ts_recv, ts_publish=event.ts_publish,
        book_valid=event.swept != NO_BOOK, book_update_id=event.book_update_id,
        bid_px=event.bid_px, bid_qty=event.bid_qty, ask_px=event.ask_px, ask_qty=event.ask_qty,
        # mid at px_dec + 1 decimals, so it stays an exact integer
        mid_px=(event.bid_px + event.ask_px) * 5 if book_ok else None,
        spread=event.ask_px - event.bid_px if book_ok else None,
        touch_qty=(event.ask_qty if event.side == Side.BUY else event.bid_qty if event.side == Side.SELL else None),
        levels_swept=max(event.swept, 0))
    record.update(_versus_nbbo(instrument, event, nbbo))
    return record


def _versus_nbbo(instrument: Instrument, event: TradeEvent, nbbo: NbboReader | None) -> dict:
    none = {"nbbo_bid_px": None, "nbbo_ask_px": None, "nbbo_px_dec": None, "nbbo_changes": None,
            "through_nbbo": None}
    if nbbo is None:
        return none
    try:
        quote = nbbo.quote(instrument.symbol)
    except KeyError:
        return none
    if not quote.valid:
        return none
    scale = 10 ** (quote.instrument.px_dec - instrument.px_dec)
    price = event.price * scale
    return {"nbbo_bid_px": quote.bid_px, "nbbo_ask_px": quote.ask_px, "nbbo_px_dec": quote.instrument.px_dec,
            "nbbo_changes": quote.changes, "through_nbbo": price > quote.ask_px or price < quote.bid_px}


def nbbo_record(epoch: int, event) -> dict:
    instrument = event.instrument
    record = _base(NBBO, "nbbo", epoch, event.position)
    record.update(symbol=instrument.symbol, px_dec=instrument.px_dec, qty_dec=instrument.qty_dec,
                  changes=event.changes, ts_recv=event.ts_recv, ts_publish=event.ts_publish,
                  source_ts_publish=event.source_ts_publish, source_venue=event.source_venue,
                  bid_px=event.bid_px, bid_qty=event.bid_qty, ask_px=event.ask_px, ask_qty=event.ask_qty,
                  bid_venues=list(event.bid_venues), ask_venues=list(event.ask_venues), flags=event.flags)
    return record


def status_record(ring: str, epoch: int, event: StatusEvent) -> dict:
    record = _base(STATUS, ring, epoch, event.position)
    record.update(venue=ring, symbol=event.instrument.symbol if event.instrument else None,
                  status=event.status.name.lower(), reason=event.reason.name.lower(),
                  ts_exchange=event.ts_exchange, ts_recv=event.ts_recv, ts_publish=event.ts_publish)
    return record


def venue_status_record(epoch: int, event) -> dict:
    """VENUE_EXCLUDED / VENUE_RESTORED from the NBBO ring: about `venue` within a symbol's NBBO."""
    record = _base(STATUS, "nbbo", epoch, event.position)
    record.update(venue=event.venue, symbol=event.instrument.symbol, status=Status(event.status).name.lower(),
                  reason=Reason(event.reason).name.lower(), ts_exchange=0, ts_recv=event.ts_publish,
                  ts_publish=event.ts_publish)
    return record


def gap_record(ring: str, epoch: int, seq: int, missed: int, why: str, ts: int) -> dict:
    record = _base(GAP, ring, epoch, seq)
    record.update(venue=ring, symbol=None, missed=missed, reason=why, ts_recv=ts, ts_publish=ts)
    return record
