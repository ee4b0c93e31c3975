"""Instruments: venue symbols mapped to normalized BASE-QUOTE symbols and fixed-point decimals.

Decimals are the precision the venue prints, not its current tick: books keep resting orders from
before a tick-size change (the recorded NKNUSDT book holds 0.25974 under a 0.0001 tick, and
11979.3 under a lot of 1), and an exact book must represent them. Asset aliases are canonicalized
(Kraken's XBT is BTC, XDG is DOGE).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from shm.segment import InstrumentSpec

ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def normalize_asset(asset: str) -> str:
    asset = asset.upper()
    return ASSET_ALIASES.get(asset, asset)


def decimals_of(step: str) -> int:
    """Decimals needed to write `step` exactly: '0.00010000' -> 4, '1.00000000' -> 0, '0.25' -> 2."""
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


def cache_path(venue: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fh" / "instruments"
    return base / f"{venue}.json"


def save(instruments: list[Instrument], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(i) for i in instruments]))
    tmp.replace(path)


def load(path: Path) -> list[Instrument]:
    return [Instrument(**row) for row in json.loads(path.read_text())]


def kraken_instruments(asset_pairs: dict) -> list[Instrument]:
    """From GET /0/public/AssetPairs: the WebSocket name (`XBT/USD`) is the venue symbol, its two
    halves the assets; decimals are pair_decimals and lot_decimals. Dark-pool pairs are skipped."""
    instruments = []
    for name, entry in asset_pairs["result"].items():
        wsname = entry.get("wsname")
        if not wsname or name.endswith(".d") or "/" not in wsname:
            continue
        base, quote = wsname.split("/", 1)
        instruments.append(Instrument("kraken", wsname, normalize_asset(base), normalize_asset(quote),
                                      int(entry["pair_decimals"]), int(entry["lot_decimals"])))
    return instruments
