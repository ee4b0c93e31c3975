"""Coinbase Advanced Trade market data as data and messages: endpoint, limits, products metadata,
subscriptions. Sans-I/O.

Sources (../shared/docs/exchange-protocols.md §2.1): `wss://advanced-trade-ws.coinbase.com`, public
channels, one channel per subscribe message (`channel`, singular), subscribe within 5 s of
connecting, `heartbeats` keeps quiet connections open, 8 unauthenticated messages per second per
IP, connections per IP 8/s (one copy of the page says 750/s: we keep to the stricter), about 16
level2 products per connection (undocumented, "too many L2 streams requested in a single session").
`-USDC` products are served as their `-USD` book on every channel but `user`.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from ...instruments import Instrument, decimals_of, normalize_asset
from ..base import ConnectionPlan, Limits, PlanOptions, Rate, Venue, VenueProtocol, compact_json, shards

BOOK, TRADES, HEARTBEATS = "level2", "market_trades", "heartbeats"
USDC_OWN_BOOKS = {"USDT-USDC", "EURC-USDC"}  # the documented exceptions to the -USDC alias

LIMITS = Limits(
    messages=Rate(8, 1.0, "ip"),
    connections=Rate(8, 1.0, "ip"),
    streams_per_connection=16,
    subscribe_deadline_s=5.0,
    heartbeat_s=1.0,  # the heartbeats channel, every second
)


def parse_instruments(venue: str, products: dict | list) -> list[Instrument]:
    """From Advanced Trade `/api/v3/brokerage/market/products` ({"products": [...]}) or Exchange
    `/products` ([...]): product id, base and quote, decimals of quote_increment / base_increment."""
    rows = products["products"] if isinstance(products, dict) else products
    instruments = []
    for row in rows:
        product = row.get("product_id") or row.get("id")
        base = row.get("base_currency_id") or row.get("base_currency")
        quote = row.get("quote_currency_id") or row.get("quote_currency")
        if not (product and base and quote and row.get("quote_increment") and row.get("base_increment")):
            continue
        instruments.append(Instrument(venue, product, normalize_asset(base), normalize_asset(quote),
                                      decimals_of(row["quote_increment"]), decimals_of(row["base_increment"]),
                                      tick=Decimal(row["quote_increment"])))
    return instruments


def message(kind: str, channel: str, products: tuple[str, ...] | None = None) -> bytes:
    body: dict[str, Any] = {"type": kind, "channel": channel}
    if products is not None:
        body["product_ids"] = list(products)
    return compact_json(body)


class CoinbaseProtocol(VenueProtocol):
    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        """At most `streams_per_connection` level2 products per connection, each connection with its
        products' trades and the heartbeats channel (keeps quiet connections open)."""
        return [ConnectionPlan(options.ws_url, group, (message("subscribe", BOOK, group),
                                                       message("subscribe", TRADES, group),
                                                       message("subscribe", HEARTBEATS)))
                for group in shards(symbols, venue.limits.streams_per_connection)]

    def resubscribe(self, symbols: tuple[str, ...], options: PlanOptions, req_id: int) -> tuple[bytes, ...]:
        """Unsubscribe and subscribe these books again: a fresh snapshot for each."""
        return message("unsubscribe", BOOK, symbols), message("subscribe", BOOK, symbols)

    def wire_instruments(self, instruments: list[Instrument], ws_url: str) -> list[Instrument]:
        """A `-USDC` product's book arrives under its `-USD` product id (documented alias): the
        instrument keeps its name and decimals, its wire symbol is the `-USD` one."""
        return [replace(i, venue_symbol=f"{i.base}-USD")
                if i.quote == "USDC" and i.venue_symbol.endswith("-USDC") and i.venue_symbol not in USDC_OWN_BOOKS
                else i for i in instruments]

    def symbols_of_message(self, message: dict[str, Any]) -> set[str]:
        if message.get("type") == "subscribe" and isinstance(message.get("product_ids"), list):
            return set(message["product_ids"])
        return set()
