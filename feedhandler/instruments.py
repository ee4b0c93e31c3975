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
    # derivatives (spot keeps the defaults): "perp" or "future"; a future's UTC expiry date YYYYMMDD;
    # one contract's face value as the venue writes it (exact decimal text), in contract_ccy; settled in
    kind: str = "spot"
    expiry: str = ""
    contract_size: str = ""
    contract_ccy: str = ""
    settle: str = ""

    @property
    def symbol(self) -> str:
        """Normalized: BASE-QUOTE spot, BASE-QUOTE-PERP perpetuals, BASE-QUOTE-YYYYMMDD futures."""
        if self.kind == "perp":
            return f"{self.base}-{self.quote}-PERP"
        if self.kind == "future":
            return f"{self.base}-{self.quote}-{self.expiry}"
        return f"{self.base}-{self.quote}"

    def spec(self, capacity: int) -> InstrumentSpec:
        return InstrumentSpec(self.venue_symbol, self.symbol, self.px_dec, self.qty_dec, capacity)
