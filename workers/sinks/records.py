"""What the sinks deliver: one record shape per kind, built from ring rows and book blocks.

Every record is a plain dict carrying `v` (SCHEMA_VERSION), `type`, `ring` (the segment it came from:
a venue or `nbbo`), `epoch` (that ring's writer start time: positions of another writer mean nothing)
and `seq` (its ring position); (ring, epoch, seq) is the dedup key. Prices and sizes are exact int64
mantissas with their decimals (`px_dec`, `qty_dec`); timestamps are ns since the epoch.

    book    top-N snapshot of one venue book (conflatable: `seq` is the last change it covers,
            `changes` how many ring changes it stands for; `periodic` when not caused by a change)
    trade   a trade and its venue book just before it; `nbbo_*` the NBBO when the sink handled it
            (built as numpy columns per batch: trade_columns, and TradeColumns.records() for a dict each)
    nbbo    an NBBO change of a symbol
    status  a book or venue status change (and VENUE_EXCLUDED / VENUE_RESTORED from the NBBO ring)
    bbo, funding, open_interest, liquidation
            a derivatives venue's market records, one for one (market_records): the venue's own best
            bid/offer; funding `rate` at `rate_dec` (18) decimals, `next_funding_time` (ns), mark and
            index price, `fields` (FIELD_* bits: what the message carried, the rest as last sent);
            open interest at qty_dec; a liquidation's price, qty, `side` (of the liquidation order:
            a liquidated long is a sell) and `venue_side` (as the venue sent it)
    gap     records this sink will never deliver: `missed` of them (-1: unknown) before `seq`
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shm.layout import (NO_BOOK, RATE_DEC, SLOT_ASK_PX, SLOT_ASK_QTY, SLOT_BID_PX, SLOT_BID_QTY, SLOT_FIELDS,
                        SLOT_FUNDING_RATE, SLOT_FUNDING_TIME, SLOT_ID, SLOT_INDEX_PX, SLOT_INSTRUMENT, SLOT_KIND,
                        SLOT_LIQ_PX, SLOT_LIQ_QTY, SLOT_LIQ_SIDE, SLOT_LIQ_VENUE_SIDE, SLOT_MARK_PX,
                        SLOT_OPEN_INTEREST, SLOT_SEQ, SLOT_TRADE_ASK_PX, SLOT_TRADE_ASK_QTY, SLOT_TRADE_BID_PX,
                        SLOT_TRADE_BID_QTY, SLOT_TRADE_BOOK_ID, SLOT_TRADE_PX, SLOT_TRADE_QTY, SLOT_TRADE_SIDE,
                        SLOT_TRADE_SWEPT, SLOT_TS_EXCHANGE, SLOT_TS_PUBLISH, SLOT_TS_RECV, Kind, Reason, Side, Status)
from shm.nbbo_reader import NbboReader
from shm.reader import BookSnapshot, StatusEvent
from shm.segment import SegmentError

SCHEMA_VERSION = 1
BOOK, TRADE, NBBO, STATUS, GAP = "book", "trade", "nbbo", "status", "gap"
BBO, FUNDING, OPEN_INTEREST, LIQUIDATION = "bbo", "funding", "open_interest", "liquidation"
MARKET_TYPES = {int(Kind.BBO): BBO, int(Kind.FUNDING): FUNDING, int(Kind.OPEN_INTEREST): OPEN_INTEREST,
                int(Kind.LIQUIDATION): LIQUIDATION}
KIND_BBO, KIND_FUNDING, KIND_OPEN_INTEREST = int(Kind.BBO), int(Kind.FUNDING), int(Kind.OPEN_INTEREST)

_SIDE_OF = {int(Side.BUY): "buy", int(Side.SELL): "sell"}


def dedup_key(record: dict) -> tuple[str, int, int]:
    return record["ring"], record["epoch"], record["seq"]


def partition_key(record: dict) -> bytes:
    """venue:symbol (NBBO: the symbol), so that each book's records stay in order in one partition."""
    if record["type"] == NBBO or record["ring"] == "nbbo":
        return (record.get("symbol") or "").encode()
    return book_key(record["venue"], record.get("symbol"))


def book_key(venue: str, symbol: str | None) -> bytes:
    """The partition key of a venue's book records: venue:symbol."""
    return f"{venue}:{symbol or ''}".encode()


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


def market_records(ring: str, epoch: int, instruments, rows: np.ndarray) -> list[dict]:
    """The records of a venue ring's bbo, funding, open interest and liquidation rows (ring order),
    read from the rows' words as Python ints at once (no event objects; a dict display per kind). A
    funding or liquidation record's px_dec is the instrument's stats decimals (layout.stats_px_dec):
    mark, index and liquidation prices are not on the tick grid."""
    out = []
    for v in rows.tolist():
        kind, instrument = v[SLOT_KIND], instruments[v[SLOT_INSTRUMENT]]
        head = {"v": SCHEMA_VERSION, "type": MARKET_TYPES[kind], "ring": ring, "epoch": epoch, "seq": v[SLOT_SEQ] - 1,
                "venue": ring, "symbol": instrument.symbol, "ts_exchange": v[SLOT_TS_EXCHANGE],
                "ts_recv": v[SLOT_TS_RECV], "ts_publish": v[SLOT_TS_PUBLISH]}
        if kind == KIND_BBO:
            out.append({**head, "px_dec": instrument.px_dec, "qty_dec": instrument.qty_dec, "update_id": v[SLOT_ID],
                        "bid_px": v[SLOT_BID_PX], "bid_qty": v[SLOT_BID_QTY], "ask_px": v[SLOT_ASK_PX],
                        "ask_qty": v[SLOT_ASK_QTY]})
        elif kind == KIND_FUNDING:
            out.append({**head, "px_dec": instrument.stats_px_dec, "rate": v[SLOT_FUNDING_RATE], "rate_dec": RATE_DEC,
                        "next_funding_time": v[SLOT_FUNDING_TIME], "mark_px": v[SLOT_MARK_PX],
                        "index_px": v[SLOT_INDEX_PX], "fields": v[SLOT_FIELDS]})
        elif kind == KIND_OPEN_INTEREST:
            out.append({**head, "qty_dec": instrument.qty_dec, "open_interest": v[SLOT_OPEN_INTEREST]})
        else:
            out.append({**head, "px_dec": instrument.stats_px_dec, "qty_dec": instrument.qty_dec, "price": v[SLOT_LIQ_PX],
                        "qty": v[SLOT_LIQ_QTY], "side": _SIDE_OF.get(v[SLOT_LIQ_SIDE], "unknown"),
                        "venue_side": _SIDE_OF.get(v[SLOT_LIQ_VENUE_SIDE], "unknown")})
    return out


def with_nulls(values: list, null: np.ndarray) -> list:
    """`values` with None where `null` is True: a masked column as drivers and dicts take it."""
    return [None if missing else value for value, missing in zip(values, null.tolist())]


@dataclass(frozen=True)
class TradeColumns:
    """A batch's trades as numpy columns in record field order; a nullable column has its mask in
    `nulls` (True: no value, e.g. no book before the trade, or no NBBO to compare it with)."""

    values: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def records(self) -> list[dict]:
        """One dict per trade (None where null), for sinks that send a message per trade."""
        lists = {}
        for name, column in self.values.items():
            values = column.tolist()
            if name in self.nulls:
                values = with_nulls(values, self.nulls[name])
            lists[name] = values
        return [dict(zip(lists, row)) for row in zip(*lists.values())]


def trade_columns(chunks: list, nbbo: NbboReader | None) -> TradeColumns:
    """The trade records of ring-row chunks [(source, int64 rows)] as columns computed with numpy: each
    trade joined with its venue book just before it (from the writer) and the NBBO now."""
    runs: list[tuple[object, list[np.ndarray]]] = []  # consecutive chunks of one source, joined
    for source, rows in chunks:
        if runs and runs[-1][0] is source:
            runs[-1][1].append(rows)
        else:
            runs.append((source, [rows]))
    parts = [_trade_chunk(source, np.concatenate(rows), nbbo) for source, rows in runs]
    if len(parts) == 1:
        return parts[0]
    return TradeColumns({name: np.concatenate([part.values[name] for part in parts]) for name in parts[0].values},
                        {name: np.concatenate([part.nulls[name] for part in parts]) for name in parts[0].nulls})


_SIDE_NAMES = np.array(["unknown", "buy", "sell"], object)  # indexed by Side: SELL (-1) is the last


def _trade_chunk(source, rows: np.ndarray, nbbo: NbboReader | None) -> TradeColumns:
    instruments = source.reader.instruments
    count = len(rows)
    index = rows[:, SLOT_INSTRUMENT]
    symbols = np.array([i.symbol for i in instruments], object)[index]
    px_dec = np.array([i.px_dec for i in instruments], np.int64)[index]
    price, side, swept = rows[:, SLOT_TRADE_PX], rows[:, SLOT_TRADE_SIDE], rows[:, SLOT_TRADE_SWEPT]
    bid_px, bid_qty = rows[:, SLOT_TRADE_BID_PX], rows[:, SLOT_TRADE_BID_QTY]
    ask_px, ask_qty = rows[:, SLOT_TRADE_ASK_PX], rows[:, SLOT_TRADE_ASK_QTY]
    book_missing = (swept == NO_BOOK) | (bid_qty == 0) | (ask_qty == 0)
    nbbo_bid, nbbo_ask, nbbo_dec, nbbo_changes = (np.zeros(count, np.int64) for _ in range(4))
    quoted = np.zeros(count, bool)
    for symbol in set(symbols.tolist()) if nbbo is not None else ():
        try:
            quote = nbbo.quote(symbol)
        except (KeyError, SegmentError):  # not a symbol of the NBBO, or its block left torn by a dead aggregator
            continue
        if quote.valid:
            these = symbols == symbol
            nbbo_bid[these], nbbo_ask[these] = quote.bid_px, quote.ask_px
            nbbo_dec[these], nbbo_changes[these] = quote.instrument.px_dec, quote.changes
            quoted |= these
    scaled = price * 10 ** np.maximum(nbbo_dec - px_dec, 0)
    ring = np.full(count, source.ring, object)
    no_quote = ~quoted
    values = {
        "v": np.full(count, SCHEMA_VERSION, np.int64), "type": np.full(count, TRADE, object), "ring": ring,
        "epoch": np.full(count, source.epoch, np.int64), "seq": rows[:, SLOT_SEQ] - 1, "venue": ring,
        "symbol": symbols, "px_dec": px_dec, "qty_dec": np.array([i.qty_dec for i in instruments], np.int64)[index],
        "trade_id": rows[:, SLOT_ID], "price": price, "qty": rows[:, SLOT_TRADE_QTY],
        "side": _SIDE_NAMES[np.where(np.abs(side) <= 1, side, Side.UNKNOWN)],
        "ts_exchange": rows[:, SLOT_TS_EXCHANGE], "ts_recv": rows[:, SLOT_TS_RECV],
        "ts_publish": rows[:, SLOT_TS_PUBLISH],
        "book_valid": swept != NO_BOOK, "book_update_id": rows[:, SLOT_TRADE_BOOK_ID],
        "bid_px": bid_px, "bid_qty": bid_qty, "ask_px": ask_px, "ask_qty": ask_qty,
        "mid_px": (bid_px + ask_px) * 5,  # at px_dec + 1 decimals, so it stays an exact integer
        "spread": ask_px - bid_px,
        "touch_qty": np.where(side == Side.BUY, ask_qty, bid_qty),
        "levels_swept": np.maximum(swept, 0),
        "nbbo_bid_px": nbbo_bid, "nbbo_ask_px": nbbo_ask, "nbbo_px_dec": nbbo_dec, "nbbo_changes": nbbo_changes,
        "through_nbbo": (scaled > nbbo_ask) | (scaled < nbbo_bid),
    }
    nulls = {"mid_px": book_missing, "spread": book_missing, "touch_qty": side == Side.UNKNOWN,
             "nbbo_bid_px": no_quote, "nbbo_ask_px": no_quote, "nbbo_px_dec": no_quote, "nbbo_changes": no_quote,
             "through_nbbo": no_quote}
    return TradeColumns(values, nulls)
