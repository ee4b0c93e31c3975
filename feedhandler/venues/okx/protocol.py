"""OKX v5 public as data and messages: endpoint, limits, instrument metadata, subscriptions.
Sans-I/O.

Sources (../shared/docs/derivatives-protocols.md §2): `wss://ws.okx.com:8443/ws/v5/public`;
`{"op":"subscribe","args":[{"channel":"books","instId":I},...]}`, one ack per arg; `books` is 400
levels deep, its snapshot comes on the socket and there is no REST bridge (a resync is an
unsubscribe and a subscribe); 3 connection attempts per second per IP; 480 subscribe/unsubscribe
requests per connection per hour; deep book channels spread fewer than 30 to a connection;
notice 64008 arrives 60 s before a service-upgrade disconnect; a connection with no message for 30 s
is dropped, so the client sends the text `ping` (answered `pong`) every 20 s. Instruments:
`GET /api/v5/public/instruments?instType=SPOT|SWAP|FUTURES`.

Market-data channels (§2.4, §2.8), on the same connection as the books: `bbo-tbt` (public, no
login) for every instrument, `funding-rate` and `mark-price` for swaps, `open-interest` for swaps and
futures, each by instId; `index-tickers` by index (the swaps' and futures' uly, e.g. BTC-USDT), and
`liquidation-orders` by instType (SWAP, FUTURES), each once for the whole feed (an index on the first
connection with an instrument of it, the liquidations on the first connection: a second subscription
would deliver each push twice). A connection
sends one subscribe request with all its args (under the 64 KB a request may carry): the 480 requests
an hour are paced 7.5 s apart, so a request per channel would keep the last channel waiting for most of
a minute.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from ...instruments import FUTURE, PERPETUAL, Instrument, decimals_of, normalize_asset
from ..base import ConnectionPlan, Limits, PlanOptions, Rate, Venue, VenueProtocol, compact_json, shards

BOOK_DEPTH = 400  # the `books` channel
LIMITS = Limits(
    messages=Rate(480, 3600.0, "connection"),
    connections=Rate(3, 1.0, "ip"),
    streams_per_connection=29,  # books channels per connection: "fewer than 30"
    book_depths=(BOOK_DEPTH,),
    client_ping_s=20.0,  # the server drops a connection that has had no message for 30 s
)
SHUTDOWN_NOTICE = "64008"
SUBSCRIBE_MAX_BYTES = 64 * 1024  # one subscribe request's length (§2.2)
SPOT, SWAP, FUTURES = "SPOT", "SWAP", "FUTURES"
# (channel, the instTypes subscribed to it) per instrument, in the order requested
INSTRUMENT_CHANNELS = (("books", (SPOT, SWAP, FUTURES)), ("trades", (SPOT, SWAP, FUTURES)),
                       ("bbo-tbt", (SPOT, SWAP, FUTURES)), ("funding-rate", (SWAP,)), ("mark-price", (SWAP,)),
                       ("open-interest", (SWAP, FUTURES)))
LIQUIDATIONS = ("liquidation-orders", (SWAP, FUTURES))  # by instType, once per feed
INDEX_TICKERS = "index-tickers"  # by index, once per feed
_FUTURE_ID = re.compile(r"[^-]+-[^-]+-\d{6}")  # BTC-USD-220527 (§2.10)


def inst_type(inst_id: str) -> str:
    """The instType of an instrument by OKX's instId forms (§2.10): `-SWAP` perpetuals, BASE-QUOTE-YYMMDD
    futures, BASE-QUOTE spot (options are not carried)."""
    if inst_id.endswith("-SWAP"):
        return SWAP
    return FUTURES if _FUTURE_ID.fullmatch(inst_id) else SPOT


def index_of(inst_id: str) -> str:
    """The index a swap or future is priced from, its uly: BTC-USDT-SWAP and BTC-USDT-250627 -> BTC-USDT."""
    return "-".join(inst_id.split("-")[:2])


def parse_instruments(venue: str, metadata: dict) -> list[Instrument]:
    """From one GET /api/v5/public/instruments response (any of SPOT, SWAP, FUTURES; others are
    skipped). Decimals from tickSz and lotSz (sizes are contracts for derivatives, base for spot).
    Spot takes baseCcy/quoteCcy. A contract's base and quote come from ctType: linear contracts are
    valued in the base (ctValCcy) and settle in the quote, inverse ones are valued in the quote and
    settle in the base; the name is never split. Swaps are `-PERP`, futures `-YYYYMMDD` of expTime."""
    instruments = []
    for entry in metadata.get("data", []):
        kind = entry.get("instType")
        tick, lot = entry["tickSz"], entry["lotSz"]
        px_dec, qty_dec = decimals_of(tick), decimals_of(lot)
        if kind == "SPOT":
            instruments.append(Instrument(venue, entry["instId"], normalize_asset(entry["baseCcy"]),
                                          normalize_asset(entry["quoteCcy"]), px_dec, qty_dec,
                                          tick=Decimal(tick), lot=Decimal(lot)))
            continue
        if kind not in ("SWAP", "FUTURES"):
            continue
        value_ccy, settle_ccy = normalize_asset(entry["ctValCcy"]), normalize_asset(entry["settleCcy"])
        base, quote = (value_ccy, settle_ccy) if entry["ctType"] == "linear" else (settle_ccy, value_ccy)
        instruments.append(Instrument(venue, entry["instId"], base, quote, px_dec, qty_dec,
                                      market=PERPETUAL if kind == "SWAP" else FUTURE, tick=Decimal(tick),
                                      lot=Decimal(lot), contract_size=Decimal(entry["ctVal"]),
                                      contract_ccy=value_ccy, settle=settle_ccy,
                                      expiry_ms=int(entry["expTime"]) if kind == "FUTURES" else 0))
    return instruments


def request(op: str, channel: str, symbols: tuple[str, ...] | list[str]) -> dict:
    return {"op": op, "args": [{"channel": channel, "instId": symbol} for symbol in symbols]}


class OkxProtocol(VenueProtocol):
    def keepalive(self) -> bytes:
        """The text `ping` (answered `pong`), sent every `limits.client_ping_s`."""
        return b"ping"

    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        """Fewer than 30 books to a connection, each with its instrument's channels (INSTRUMENT_CHANNELS);
        the indices of its swaps and futures not subscribed on an earlier connection; the first
        connection also subscribes the liquidations of the instTypes carried."""
        channel, kinds = LIQUIDATIONS
        liquidated = [{"channel": channel, "instType": kind} for kind in kinds
                      if any(inst_type(symbol) == kind for symbol in symbols)]
        plans, indexed = [], set()
        for group in shards(symbols, venue.limits.streams_per_connection):
            args = [{"channel": name, "instId": symbol} for name, types in INSTRUMENT_CHANNELS for symbol in group
                    if inst_type(symbol) in types]
            indices = dict.fromkeys(index_of(s) for s in group if inst_type(s) != SPOT and index_of(s) not in indexed)
            indexed.update(indices)
            args += [{"channel": INDEX_TICKERS, "instId": index} for index in indices]
            plans.append(ConnectionPlan(options.ws_url, group, (compact_json(
                {"op": "subscribe", "args": args + (liquidated if not plans else [])}),)))
        return plans

    def resubscribe(self, symbols: tuple[str, ...], options: PlanOptions, req_id: int) -> tuple[bytes, ...]:
        """Unsubscribe and subscribe these books again: a fresh snapshot (prevSeqId -1) for each."""
        return (compact_json({"id": str(req_id), **request("unsubscribe", "books", symbols)}),
                compact_json({"id": str(req_id + 1), **request("subscribe", "books", symbols)}))

    def is_shutdown_notice(self, payload: bytes) -> bool:
        """`{"event":"notice","code":"64008",...}`: a service upgrade disconnects in 60 s."""
        if b'"notice"' not in payload:
            return False
        try:
            message = json.loads(payload)
        except ValueError:
            return False
        return isinstance(message, dict) and message.get("event") == "notice" and message.get("code") == SHUTDOWN_NOTICE

    def symbols_of_message(self, message: dict[str, Any]) -> set[str]:
        if message.get("op") != "subscribe":
            return set()
        return {arg["instId"] for arg in message.get("args", [])
                if isinstance(arg, dict) and "instId" in arg and arg.get("channel") != INDEX_TICKERS}
