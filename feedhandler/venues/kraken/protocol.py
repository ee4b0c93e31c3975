"""Kraken spot WebSocket v2 as data and messages: endpoint, limits, pair metadata, subscriptions.
Sans-I/O.

Sources (../shared/docs/exchange-protocols.md §3): `wss://ws.kraken.com/v2`; `{"method":"subscribe",
"params":{"channel":"book","symbol":[...],"depth":N,"snapshot":true},"req_id":N}` with N one of
10/25/100/500/1000; one ack per symbol; snapshots on the socket; heartbeats once a second while
subscribed; v2 names pairs `BTC/USD` where REST AssetPairs' wsname says `XBT/USD`. Kraken publishes
no message-rate number ("Exceeded msg rate" is dynamic) and no symbols-per-connection cap: the
numbers below are ours, kept low.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from ...instruments import Instrument, normalize_asset
from ..base import ConnectionPlan, Limits, PlanOptions, Rate, Venue, VenueProtocol, compact_json, shards

LIMITS = Limits(
    messages=Rate(10, 1.0, "connection"),
    connections=Rate(10, 10.0, "ip"),
    streams_per_connection=200,
    book_depths=(10, 25, 100, 500, 1000),
    heartbeat_s=1.0,  # {"channel":"heartbeat"} about once a second when nothing else flows
)
CHECKSUM_LEVELS = 10


def parse_instruments(venue: str, metadata: dict) -> list[Instrument]:
    """From GET /0/public/AssetPairs, or from the v2 `instrument` channel snapshot. AssetPairs: the
    WebSocket name (`XBT/USD`) is the venue symbol, its two halves the assets, decimals are
    pair_decimals and lot_decimals; dark-pool pairs are skipped. v2: `data.pairs[]` with `symbol`,
    `base`, `quote`, `price_precision`, `qty_precision` (what the v2 book checksum is printed at);
    delisted pairs are skipped."""
    if metadata.get("channel") == "instrument":
        return [Instrument(venue, pair["symbol"], normalize_asset(pair["base"]), normalize_asset(pair["quote"]),
                           int(pair["price_precision"]), int(pair["qty_precision"]))
                for pair in metadata["data"]["pairs"] if pair.get("status") != "delisted"]
    instruments = []
    for name, entry in metadata["result"].items():
        wsname = entry.get("wsname")
        if not wsname or name.endswith(".d") or "/" not in wsname:
            continue
        base, quote = wsname.split("/", 1)
        instruments.append(Instrument(venue, wsname, normalize_asset(base), normalize_asset(quote),
                                      int(entry["pair_decimals"]), int(entry["lot_decimals"])))
    return instruments


def request(method: str, params: dict, req_id: int) -> bytes:
    return compact_json({"method": method, "params": params, "req_id": req_id})


def v2_instruments(instruments: list[Instrument]) -> list[Instrument]:
    """The same instruments under their v2 names: v2 names pairs by their canonical assets
    (`BTC/USD`) where v1 and REST AssetPairs' wsname say `XBT/USD`."""
    return [Instrument(i.venue, f"{i.base}/{i.quote}", i.base, i.quote, i.px_dec, i.qty_dec) for i in instruments]


class KrakenProtocol(VenueProtocol):
    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        """v2 connections: books at the subscribed depth (their snapshots come on the socket) and trades."""
        depth = options.book_depth
        if depth not in venue.limits.book_depths:
            raise ValueError(f"kraken book depth must be one of {venue.limits.book_depths}, got {depth}")
        return [ConnectionPlan(options.ws_url, group, (
            request("subscribe", {"channel": "book", "symbol": list(group), "depth": depth, "snapshot": True}, 1),
            request("subscribe", {"channel": "trade", "symbol": list(group), "snapshot": False}, 2)))
            for group in shards(symbols, venue.limits.streams_per_connection)]

    def resubscribe(self, symbols: tuple[str, ...], options: PlanOptions, req_id: int) -> tuple[bytes, ...]:
        """Unsubscribe and subscribe these books again: a fresh snapshot for each."""
        depth = options.book_depth
        return (request("unsubscribe", {"channel": "book", "symbol": list(symbols), "depth": depth}, req_id),
                request("subscribe", {"channel": "book", "symbol": list(symbols), "depth": depth, "snapshot": True},
                        req_id + 1))

    def wire_instruments(self, instruments: list[Instrument], ws_url: str) -> list[Instrument]:
        """v2 (`.../v2`) names pairs by their canonical assets; v1 by the metadata's wsname."""
        return v2_instruments(instruments) if urlparse(ws_url).path.rstrip("/").endswith("/v2") else instruments

    def symbols_of_message(self, message: dict[str, Any]) -> set[str]:
        if message.get("event") == "subscribe":
            return set(message.get("pair", []))  # v1
        if message.get("method") == "subscribe":
            return set((message.get("params") or {}).get("symbol", []))  # v2
        return set()
