"""Binance USD-M futures as data: endpoints, documented limits, the 2026 route split, the REST depth
snapshot, and exchangeInfo's instruments (shared with COIN-M, which differs only in this data).
Sans-I/O; the protocol is spot Binance's (`BinanceProtocol`) with futures data.

Sources (../shared/docs/derivatives-protocols.md §1.1-1.7): `wss://fstream.binance.com` split in
2026 into `/public` (depth, bookTicker) and `/market` (aggTrade, markPrice, forceOrder, ...) routes, one
connection each (a route carries no other's streams; the unrouted legacy path was retired
2026-04-23); REST `https://fapi.binance.com`, `GET /fapi/v1/depth` at limit 5..1000 with weight 2
(up to 50), 5 (100), 10 (500), 20 (1000); `GET /fapi/v1/exchangeInfo` weight 1; `GET /fapi/v1/openInterest`
weight 1 (open interest has no stream: it is polled); REQUEST_WEIGHT 2400
per minute; 10 incoming messages/s per connection, 200 streams per connection (1024 in one copy:
UNCONFIRMED, so 200), 24 h lifetime, a server ping every 3 min to answer within 10 min.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...instruments import FUTURE, PERPETUAL, Instrument, normalize_asset
from ..base import Limits, Rate
from ..binance.protocol import BinanceProtocol

DEPTH_STREAM = "{symbol}@depth@100ms"
TRADE_STREAM = "{symbol}@aggTrade"  # the documented futures trade stream (@trade is UNCONFIRMED there)
BOOK_TICKER_STREAM = "{symbol}@bookTicker"  # best bid/offer on every change: BBO records
MARK_PRICE_STREAM = "{symbol}@markPrice@1s"  # mark, index, funding rate and time each second: FUNDING records
FORCE_ORDER_STREAM = "{symbol}@forceOrder"  # the latest liquidation of each second: LIQUIDATION records
SNAPSHOT_WEIGHTS = ((50, 2), (100, 5), (500, 10), (1000, 20))  # limit up to -> weight
DATED_TYPES = ("CURRENT_MONTH", "NEXT_MONTH", "CURRENT_QUARTER", "NEXT_QUARTER")  # and *_DELIVERING

OPEN_INTEREST_WEIGHT = 1  # GET /fapi/v1/openInterest (COIN-M's /dapi/v1/openInterest: UNCONFIRMED, taken as 1)
OPEN_INTEREST_POLL_S = 10.0  # each instrument's open interest this often ...
OPEN_INTEREST_WEIGHT_PER_MINUTE = 600  # ... within a quarter of the 2400 REQUEST_WEIGHT a minute (more instruments: slower)

# every instrument (all are perpetual or dated contracts) gets its book, trades and market-data records
USDM = BinanceProtocol(routes=(("/public/stream", (DEPTH_STREAM, BOOK_TICKER_STREAM)),
                               ("/market/stream", (TRADE_STREAM, MARK_PRICE_STREAM, FORCE_ORDER_STREAM))),
                       snapshot_path="/fapi/v1/depth", snapshot_weights=SNAPSHOT_WEIGHTS,
                       poll_path="/fapi/v1/openInterest", poll_weight=OPEN_INTEREST_WEIGHT, poll_s=OPEN_INTEREST_POLL_S,
                       poll_weight_per_minute=OPEN_INTEREST_WEIGHT_PER_MINUTE)

LIMITS = Limits(
    messages=Rate(10, 1.0, "connection"),
    connections=Rate(300, 300.0, "ip"),  # UNCONFIRMED for futures: spot's published rate
    streams_per_connection=200,
    lifetime_s=86_400.0,
    rotate_margin_s=1_800.0,  # rotate 30 min before the cut, at a moment of our choosing
    server_ping_s=180.0,
    pong_deadline_s=600.0,
    rest_weight_per_minute=2400,
    instruments_weight=1,
    snapshot_limits=(5, 10, 20, 50, 100, 500, 1000),
)


def printed_decimals(step: str) -> int:
    """Decimals a step is printed with ('0.0010' -> 4, '1' -> 0): Binance prints book prices and
    quantities with as many, so every level parses exactly."""
    return len(step.strip().partition(".")[2])


def _market(contract_type: str) -> str | None:
    kind = contract_type.removesuffix("_DELIVERING")
    if kind == "PERPETUAL":
        return PERPETUAL
    if kind in DATED_TYPES:
        return FUTURE
    return None  # no contract type: not a tradable contract (e.g. one pending launch)


def parse_instruments(venue: str, exchange_info: dict[str, Any]) -> list[Instrument]:
    """From GET /fapi/v1/exchangeInfo or /dapi/v1/exchangeInfo: the kind from contractType (never the
    symbol), base and quote from baseAsset/quoteAsset, tick and lot from the PRICE_FILTER tickSize and
    LOT_SIZE stepSize (not pricePrecision/quantityPrecision, which are not the tick or the step), the
    expiry of a dated contract from deliveryDate, the settlement currency from marginAsset; COIN-M's
    contractSize is USD per contract (its quantities are contracts)."""
    instruments = []
    for entry in exchange_info["symbols"]:
        market = _market(entry.get("contractType", ""))
        filters = {f.get("filterType"): f for f in entry.get("filters", ())}
        if market is None or "PRICE_FILTER" not in filters or "LOT_SIZE" not in filters:
            continue
        tick, lot = filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]
        quote = normalize_asset(entry["quoteAsset"])
        sized = "contractSize" in entry
        instruments.append(Instrument(
            venue, entry["symbol"], normalize_asset(entry["baseAsset"]), quote, printed_decimals(tick),
            printed_decimals(lot), market=market, tick=Decimal(tick), lot=Decimal(lot),
            contract_size=Decimal(str(entry["contractSize"])) if sized else Decimal(1),
            contract_ccy=quote if sized else "", settle=normalize_asset(entry.get("marginAsset", quote)),
            expiry_ms=int(entry["deliveryDate"]) if market == FUTURE else 0))
    return instruments
