"""Instruments: venue symbols mapped to normalized BASE-QUOTE symbols and fixed-point decimals.

Decimals must hold every level a book can contain, not just the current tick: Binance books keep
resting orders from before a tick-size change (the recorded NKNUSDT book holds 0.25974 under a
0.0001 tick, and 11979.3 under a lot of 1), so Binance uses the 8 decimals it prints. Kraken's
checksum is defined over pair_decimals/lot_decimals, so Kraken uses those; a level finer than
that would be a counted decode error, never a rounded one. Asset aliases are canonicalized
(Kraken's XBT is BTC, XDG is DOGE).

Derivatives carry their market as attributes, never in parsed strings (derivatives-protocols.md §5.4):
the market (spot, perpetual, future), the contract size and the currency it is counted in, the
settlement currency and the expiry; their normalized names are BASE-QUOTE-PERP and BASE-QUOTE-YYYYMMDD
(the UTC date of expiry from the metadata). The defaults are a spot pair's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from shm.segment import InstrumentSpec

ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
MAX_TICK_UNITS = 1 << 40  # a book's ladder spans window * tick units: kept far inside int64
SPOT, PERPETUAL, FUTURE = "spot", "perpetual", "future"


def normalize_asset(asset: str) -> str:
    asset = asset.upper()
    return ASSET_ALIASES.get(asset, asset)


def decimals_of(step: str) -> int:
    """Decimals needed to write `step` exactly: '0.00010000' -> 4, '1' -> 0, '0.25' -> 2."""
    whole, _, fraction = step.strip().partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a plain decimal step size: {step!r}")
    return len(fraction.rstrip("0"))


def decimal_mantissa(value: Decimal) -> tuple[int, int]:
    """A positive decimal as (mantissa, decimals), exact and shortest: 0.01 -> (1, 2), 100 -> (100, 0)."""
    sign, digits, exponent = value.normalize().as_tuple()
    if sign or not isinstance(exponent, int) or value <= 0:
        raise ValueError(f"not a positive finite decimal: {value}")
    mantissa = int("".join(map(str, digits)))
    return (mantissa, -exponent) if exponent < 0 else (mantissa * 10 ** exponent, 0)


def split_symbol(symbol: str) -> tuple[str, str, str]:
    """(base, quote, market) of a normalized name: 'BTC-USDT' spot, 'BTC-USDT-PERP' perpetual,
    'BTC-USD-20261225' a future (its expiry is the metadata's, not this string's)."""
    base, _, rest = symbol.partition("-")
    quote, _, suffix = rest.partition("-")
    return base, quote, PERPETUAL if suffix == "PERP" else FUTURE if suffix else SPOT


@dataclass(frozen=True)
class Instrument:
    venue: str
    venue_symbol: str
    base: str
    quote: str
    px_dec: int
    qty_dec: int
    market: str = SPOT  # SPOT | PERPETUAL | FUTURE
    tick: Decimal | None = None  # price increment, where the metadata gives one
    lot: Decimal | None = None  # quantity increment, where the metadata gives one
    contract_size: Decimal = Decimal(1)  # what one unit of quantity is worth, in contract_ccy
    contract_ccy: str = ""  # the currency of contract_size ("": the base asset, as on spot)
    settle: str = ""  # settlement currency of a derivative ("" on spot)
    expiry_ms: int = 0  # a future's delivery time, ms since the epoch (0: none)

    @property
    def symbol(self) -> str:
        """BASE-QUOTE, BASE-QUOTE-PERP, or BASE-QUOTE-YYYYMMDD (UTC date of expiry)."""
        if self.market == PERPETUAL:
            return f"{self.base}-{self.quote}-PERP"
        if self.market == FUTURE:
            return f"{self.base}-{self.quote}-{time.strftime('%Y%m%d', time.gmtime(self.expiry_ms // 1000))}"
        return f"{self.base}-{self.quote}"

    @property
    def tick_units(self) -> int:
        """The tick in price units (px_dec decimals): the book's ladder step. 1 where the metadata
        gives no tick, one finer than the decimals (never the case on a venue's own metadata) or one
        above MAX_TICK_UNITS (a step no book could span)."""
        if self.tick is None or not self.tick.is_finite() or self.tick <= 0:
            return 1
        units = self.tick.scaleb(self.px_dec)
        return int(units) if units == units.to_integral_value() and 1 <= units <= MAX_TICK_UNITS else 1

    def spec(self, capacity: int) -> InstrumentSpec:
        mant, dec = decimal_mantissa(self.contract_size)
        return InstrumentSpec(self.venue_symbol, self.symbol, self.px_dec, self.qty_dec, capacity,
                              self.contract_ccy or self.base, mant, dec)
