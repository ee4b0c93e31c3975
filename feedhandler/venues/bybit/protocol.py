"""Bybit v5 public as data and messages: endpoints per category, limits, instrument metadata,
subscriptions, the client ping. Sans-I/O.

Sources (../shared/docs/derivatives-protocols.md §3): one socket per category,
`wss://stream.bybit.com/v5/public/spot|linear|inverse` (a symbol exists only on its category's
socket: spot BTCUSDT and linear BTCUSDT are different instruments, so each category is a venue of
its own here); `{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}`, acked
by `{"success":true,...,"op":"subscribe"}`; spot takes at most 10 args a request and every
request's args stay under 21,000 characters; books `orderbook.{1,50,200,1000}.{symbol}` send their
snapshot on the socket and there is no REST bridge (a resync is an unsubscribe and a subscribe);
the client sends `{"op":"ping"}` every 20 s; 500 new connections per 5 min per IP; REST 600
requests per 5 s per IP. Instruments: `GET /v5/market/instruments-info?category=...`, paged on
linear and inverse (`limit`, then `cursor` = the last page's `nextPageCursor` until it is empty).

What a connection subscribes, per symbol: the book at the configured depth (50, 200 or 1000),
`publicTrade`, and `orderbook.1` as the BBO (so a book is never one level deep here); on the linear
and inverse sockets (contracts) also `tickers` (funding, mark, index, open interest) and
`allLiquidation`.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

from ...instruments import FUTURE, PERPETUAL, Instrument, decimals_of, normalize_asset
from ..base import ConnectionPlan, Limits, PlanOptions, Rate, Venue, VenueProtocol, compact_json, shards

ARGS_PER_REQUEST = 10  # spot's documented maximum; linear and inverse have none, so it serves all three
BBO_DEPTH = 1  # orderbook.1: the BBO topic
TOPIC_DEPTHS = (BBO_DEPTH, 50, 200, 1000)  # the orderbook depths spot, linear and inverse serve (§3.4)
KEEPALIVE = compact_json({"op": "ping"})
LIMITS = Limits(
    messages=Rate(10, 1.0, "connection"),  # undocumented for public sockets: a subscribe burst and a ping fit
    connections=Rate(500, 300.0, "ip"),
    streams_per_connection=50,  # no documented cap (spot and futures): 100 topics a connection, a choice
    client_ping_s=20.0,
    rest_weight_per_minute=7200,  # 600 requests per 5 s
    book_depths=TOPIC_DEPTHS[1:],  # orderbook.1 is subscribed as the BBO
)
CONTRACT_TYPES = {"LinearPerpetual": PERPETUAL, "InversePerpetual": PERPETUAL, "LinearFutures": FUTURE,
                  "InverseFutures": FUTURE}


def parse_instruments(venue: str, metadata: dict) -> list[Instrument]:
    """From one GET /v5/market/instruments-info response of the spot, linear or inverse category
    (an option entry, with no contractType Bybit lists for futures, is skipped). Decimals from
    priceFilter.tickSize and lotSizeFilter.qtyStep (spot: basePrecision). Base and quote are
    baseCoin/quoteCoin, never the symbol split. The market comes from contractType (a perpetual's
    deliveryTime is not read); a future's expiry is deliveryTime (ms). Linear quantities are in the
    base coin, inverse ones in USD (the quote coin), one unit per contract."""
    result = metadata.get("result") or {}
    instruments = []
    for entry in result.get("list") or []:
        base, quote = normalize_asset(entry["baseCoin"]), normalize_asset(entry["quoteCoin"])
        lots = entry["lotSizeFilter"]
        tick = entry["priceFilter"]["tickSize"]
        contract_type = entry.get("contractType")
        if contract_type is None and result.get("category", "spot") == "spot":
            lot = lots["basePrecision"]
            instruments.append(Instrument(venue, entry["symbol"], base, quote, decimals_of(tick), decimals_of(lot),
                                          tick=Decimal(tick), lot=Decimal(lot)))
            continue
        market = CONTRACT_TYPES.get(contract_type)
        if market is None:
            continue
        lot = lots["qtyStep"]
        inverse = contract_type.startswith("Inverse")
        instruments.append(Instrument(venue, entry["symbol"], base, quote, decimals_of(tick), decimals_of(lot),
                                      market=market, tick=Decimal(tick), lot=Decimal(lot),
                                      contract_ccy=quote if inverse else base,
                                      settle=normalize_asset(entry["settleCoin"]),
                                      expiry_ms=int(entry["deliveryTime"]) if market == FUTURE else 0))
    return instruments


def topics(symbols: tuple[str, ...] | list[str], depth: int, records: bool = True,
           contracts: bool = False) -> list[str]:
    """The book topic of each symbol at `depth`, each followed (with `records`) by its trade and BBO
    topics and, for `contracts`, its ticker and liquidation topics."""
    names = []
    for symbol in symbols:
        names.append(f"orderbook.{depth}.{symbol}")
        if records:
            names += [f"publicTrade.{symbol}", f"orderbook.{BBO_DEPTH}.{symbol}"]
        if records and contracts:
            names += [f"tickers.{symbol}", f"allLiquidation.{symbol}"]
    return names


def carries_contracts(ws_url: str) -> bool:
    """Whether the socket at `ws_url` is a contracts category (linear, inverse), not spot."""
    return not urlparse(ws_url).path.rstrip("/").endswith("/spot")


def requests(op: str, names: list[str], req_id: int | None = None) -> tuple[bytes, ...]:
    """`op` requests over `names`, ARGS_PER_REQUEST args each."""
    out = []
    for group in shards(names, ARGS_PER_REQUEST):
        message: dict[str, Any] = {"op": op, "args": list(group)}
        if req_id is not None:
            message = {"req_id": str(req_id), **message}
        out.append(compact_json(message))
    return tuple(out)


class BybitProtocol(VenueProtocol):
    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        """Books at the subscribed depth and trades, `streams_per_connection` symbols a connection."""
        depth = options.book_depth
        if depth not in venue.limits.book_depths:
            raise ValueError(f"bybit book depth must be one of {venue.limits.book_depths}, got {depth}")
        contracts = carries_contracts(options.ws_url)
        return [ConnectionPlan(options.ws_url, group, requests("subscribe", topics(group, depth, contracts=contracts)))
                for group in shards(symbols, venue.limits.streams_per_connection)]

    def resubscribe(self, symbols: tuple[str, ...], options: PlanOptions, req_id: int) -> tuple[bytes, ...]:
        """Unsubscribe and subscribe these books again: a fresh snapshot of each."""
        names = topics(symbols, options.book_depth, records=False)
        return requests("unsubscribe", names, req_id) + requests("subscribe", names, req_id + 1)

    def keepalive(self) -> bytes:
        """`{"op":"ping"}`, every `limits.client_ping_s`: Bybit cuts connections without it."""
        return KEEPALIVE

    def next_page(self, url: str, body: bytes) -> str | None:
        """`url` with `cursor` set to the page's `nextPageCursor` (§3.9); None when that is empty or
        the page is not a listing."""
        try:
            cursor = json.loads(body)["result"]["nextPageCursor"]
        except (ValueError, KeyError, TypeError):
            return None
        if not cursor or not isinstance(cursor, str):
            return None
        parts = urlparse(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cursor"] + [("cursor", cursor)]
        return parts._replace(query=urlencode(query)).geturl()

    def merge_pages(self, bodies: list[bytes]) -> bytes:
        """The first page with every page's `list`, in order, and no next cursor."""
        if len(bodies) == 1:
            return bodies[0]
        entries = []
        for number, body in enumerate(bodies, 1):
            try:
                listed = json.loads(body)["result"]["list"]
            except (ValueError, KeyError, TypeError):
                listed = None
            if not isinstance(listed, list):
                raise ValueError(f"page {number} of {len(bodies)} lists no instruments")
            entries += listed
        first = json.loads(bodies[0])
        first["result"] = {**first["result"], "list": entries, "nextPageCursor": ""}
        return compact_json(first)

    def symbols_of_message(self, message: dict[str, Any]) -> set[str]:
        if message.get("op") != "subscribe":
            return set()
        return {arg.rpartition(".")[2] for arg in message.get("args", [])
                if isinstance(arg, str) and arg.startswith(("orderbook.", "publicTrade."))}
