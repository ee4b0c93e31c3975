"""Instruments: venue symbols mapped to normalized BASE-QUOTE symbols and fixed-point decimals.

Decimals must hold every level a book can contain, not just the current tick: Binance books keep
resting orders from before a tick-size change (the recorded NKNUSDT book holds 0.25974 under a
0.0001 tick, and 11979.3 under a lot of 1), so Binance uses the 8 decimals it prints. Kraken's
checksum is defined over pair_decimals/lot_decimals, so Kraken uses those; a level finer than
that would be a counted decode error, never a rounded one. Asset aliases are canonicalized
(Kraken's XBT is BTC, XDG is DOGE).
"""
from __future__ import annotations

from dataclasses import dataclass

from shm.segment import InstrumentSpec

ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def normalize_asset(asset: str) -> str:
    asset = asset.upper()
    return ASSET_ALIASES.get(asset, asset)


def decimals_of(step: str) -> int:
    """Decimals needed to write `step` exactly: '0.00010000' -> 4, '1' -> 0, '0.25' -> 2."""
    whole, _, fraction = step.strip().partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a plain decimal step size: {step!r}")
    return len(fraction.rstrip("0"))


@dataclass(frozen=True)
class Instrument:
    venue: str
    venue_symbol: str
    base: str
    quote: str
    px_dec: int
    qty_dec: int

    @property
    def symbol(self) -> str:
        return f"{self.base}-{self.quote}"

    def spec(self, capacity: int) -> InstrumentSpec:
        return InstrumentSpec(self.venue_symbol, self.symbol, self.px_dec, self.qty_dec, capacity)


def binance_instruments(exchange_info: dict) -> list[Instrument]:
    """From GET /api/v3/exchangeInfo: base/quote from baseAsset/quoteAsset (never split the symbol),
    price decimals from quoteAssetPrecision (quotePrecision before it), qty from baseAssetPrecision:
    the 8 decimals Binance prints, which hold every resting level whatever the tick was."""
    instruments = []
    for entry in exchange_info["symbols"]:
        price_decimals = entry.get("quoteAssetPrecision", entry.get("quotePrecision"))
        if price_decimals is None or "baseAssetPrecision" not in entry:
            continue
        instruments.append(Instrument("binance", entry["symbol"], normalize_asset(entry["baseAsset"]),
                                      normalize_asset(entry["quoteAsset"]), int(price_decimals),
                                      int(entry["baseAssetPrecision"])))
    return instruments


def kraken_instruments(metadata: dict) -> list[Instrument]:
    """From GET /0/public/AssetPairs, or from the v2 `instrument` channel snapshot. AssetPairs: the
    WebSocket name (`XBT/USD`) is the venue symbol, its two halves the assets, decimals are
    pair_decimals and lot_decimals; dark-pool pairs are skipped. v2: `data.pairs[]` with `symbol`,
    `base`, `quote`, `price_precision`, `qty_precision` (what the v2 book checksum is printed at);
    delisted pairs are skipped."""
    if metadata.get("channel") == "instrument":
        return [Instrument("kraken", pair["symbol"], normalize_asset(pair["base"]), normalize_asset(pair["quote"]),
                           int(pair["price_precision"]), int(pair["qty_precision"]))
                for pair in metadata["data"]["pairs"] if pair.get("status") != "delisted"]
    instruments = []
    for name, entry in metadata["result"].items():
        wsname = entry.get("wsname")
        if not wsname or name.endswith(".d") or "/" not in wsname:
            continue
        base, quote = wsname.split("/", 1)
        instruments.append(Instrument("kraken", wsname, normalize_asset(base), normalize_asset(quote),
                                      int(entry["pair_decimals"]), int(entry["lot_decimals"])))
    return instruments


def coinbase_instruments(products: dict | list) -> list[Instrument]:
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
        instruments.append(Instrument("coinbase", product, normalize_asset(base), normalize_asset(quote),
                                      decimals_of(row["quote_increment"]), decimals_of(row["base_increment"])))
    return instruments
