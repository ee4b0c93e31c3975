"""Binance spot as data and messages: endpoints, documented limits, instrument metadata, the
combined-stream URL that subscribes a connection, and the REST depth snapshot. Sans-I/O. The
protocol is data (`BinanceProtocol`): the futures venues (binance_usdm, binance_coinm) are the
same protocol with their own routes, snapshot path and weights.

Sources (../shared/docs/exchange-protocols.md §1, derivatives-protocols.md §4.1): base endpoints
`wss://stream.binance.com:9443` with `/ws/<stream>` or `/stream?streams=a/b` (events wrapped as
{"stream","data"}); `timeUnit=MICROSECOND` for µs stamps; 5 incoming messages/s per connection,
1024 streams per connection, 300 connections per 5 min per IP, 24 h lifetime, a ping every 20 s to
be answered within 1 min; REST weight 6000/min, depth weight by limit (5/25/50/250).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...instruments import Instrument, normalize_asset
from ..base import ConnectionPlan, Limits, PlanOptions, Rate, RestRequest, Venue, VenueProtocol, query_of, shards

SNAPSHOT_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))  # limit up to -> weight
TIME_UNIT = "MICROSECOND"

LIMITS = Limits(
    messages=Rate(5, 1.0, "connection"),
    connections=Rate(300, 300.0, "ip"),
    streams_per_connection=1024,
    lifetime_s=86_400.0,
    rotate_margin_s=1_800.0,  # rotate 30 min before the cut, at a moment of our choosing
    server_ping_s=20.0,
    pong_deadline_s=60.0,
    rest_weight_per_minute=6000,
    instruments_weight=20,
    snapshot_limits=(5, 10, 20, 50, 100, 500, 1000, 5000),
)


def parse_instruments(venue: str, exchange_info: dict) -> list[Instrument]:
    """From GET /api/v3/exchangeInfo: base/quote from baseAsset/quoteAsset (never split the symbol),
    price decimals from quoteAssetPrecision (quotePrecision before it), qty from baseAssetPrecision:
    the 8 decimals Binance prints, which hold every resting level whatever the tick was. The tick
    (PRICE_FILTER tickSize) only sets the book's ladder step."""
    instruments = []
    for entry in exchange_info["symbols"]:
        price_decimals = entry.get("quoteAssetPrecision", entry.get("quotePrecision"))
        if price_decimals is None or "baseAssetPrecision" not in entry:
            continue
        ticks = [f.get("tickSize") for f in entry.get("filters", ()) if f.get("filterType") == "PRICE_FILTER"]
        instruments.append(Instrument(venue, entry["symbol"], normalize_asset(entry["baseAsset"]),
                                      normalize_asset(entry["quoteAsset"]), int(price_decimals),
                                      int(entry["baseAssetPrecision"]), tick=_tick(ticks[0] if ticks else None)))
    return instruments


def _tick(text: object) -> Decimal | None:
    """A positive tickSize as a Decimal; None for a missing or malformed one (the book then steps
    by one price unit: slower, never wrong)."""
    try:
        tick = Decimal(str(text))
    except ArithmeticError:
        return None
    return tick if tick.is_finite() and tick > 0 else None


def snapshot_weight(limit: int, weights: tuple[tuple[int, int], ...] = SNAPSHOT_WEIGHTS) -> int:
    """Request weight of a depth snapshot of `limit` levels from a (limit up to, weight) table."""
    for top, weight in weights:
        if limit <= top:
            return weight
    return weights[-1][1]


@dataclass(frozen=True)
class BinanceProtocol(VenueProtocol):
    """The Binance stream protocol as data: which streams go on which route (one connection per
    route and shard, streams named in the URL so nothing sent counts against the message rate), the
    depth snapshot's path and weights, and the time unit asked for ("" : the venue's ms)."""

    routes: tuple[tuple[str, tuple[str, ...]], ...]  # (combined-stream path, per-book stream names)
    snapshot_path: str
    snapshot_weights: tuple[tuple[int, int], ...]
    time_unit: str = ""
    poll_path: str = ""  # REST path polled per instrument ("": none): futures open interest
    poll_weight: int = 1
    poll_s: float = 0.0  # each instrument's poll interval ...
    poll_weight_per_minute: int = 0  # ... unless the polls of all instruments would weigh more than this a minute

    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        per_book = max(len(streams) for _, streams in self.routes)
        per_connection = max(1, venue.limits.streams_per_connection // per_book)
        base = options.ws_url.rstrip("/")
        unit = f"&timeUnit={self.time_unit}" if self.time_unit else ""
        plans = []
        for group in shards(symbols, per_connection):
            for path, streams in self.routes:
                names = "/".join(stream.format(symbol=symbol.lower()) for symbol in group for stream in streams)
                plans.append(ConnectionPlan(f"{base}{path}?streams={names}{unit}", group))
        return plans

    def snapshot_request(self, symbol: str, options: PlanOptions) -> RestRequest:
        limit = options.snapshot_limit
        return RestRequest("GET", f"{options.rest_url.rstrip('/')}{self.snapshot_path}?symbol={symbol}&limit={limit}",
                           snapshot_weight(limit, self.snapshot_weights))

    def poll_request(self, symbol: str, options: PlanOptions) -> RestRequest | None:
        if not self.poll_path:
            return None
        return RestRequest("GET", f"{options.rest_url.rstrip('/')}{self.poll_path}?symbol={symbol}", self.poll_weight)

    def poll_interval_s(self, instruments: int) -> float:
        if not self.poll_path:
            return 0.0
        return max(self.poll_s, 60.0 * instruments * self.poll_weight / self.poll_weight_per_minute)

    def is_shutdown_notice(self, payload: bytes) -> bool:
        """`serverShutdown` (raw or combined form): the server closes this connection soon."""
        return len(payload) < 256 and b'"serverShutdown"' in payload

    def time_unit_ns(self, url: str) -> int:
        units = query_of(url).get("timeUnit", [""])
        return 1_000 if units[-1].upper() == TIME_UNIT else 1_000_000

    def symbols_of_url(self, url: str) -> set[str]:
        streams = query_of(url).get("streams", [""])[0]
        return {stream.split("@")[0].upper() for stream in streams.split("/") if stream}

    def symbols_of_message(self, message: dict[str, Any]) -> set[str]:
        if message.get("method") == "SUBSCRIBE" and isinstance(message.get("params"), list):
            return {str(stream).split("@")[0].upper() for stream in message["params"]}
        return set()


# spot: each book's diffs every 100 ms and every trade on one combined stream, µs timestamps
SPOT = BinanceProtocol(routes=(("/stream", ("{symbol}@depth@100ms", "{symbol}@trade")),),
                       snapshot_path="/api/v3/depth", snapshot_weights=SNAPSHOT_WEIGHTS, time_unit=TIME_UNIT)
