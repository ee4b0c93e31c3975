"""The venue registry: one package per venue (`feedhandler/venues/<venue>/`), each exporting one
`Venue` and its variants. This module and `dispatch` are the only places that list venues; the
worker, config, warmup, replay, import and metrics code look venues up here."""
from __future__ import annotations

from . import binance, binance_coinm, binance_usdm, bybit, coinbase, kraken, okx
from .base import Venue

VENUES: dict[str, Venue] = {venue.name: venue for package in (binance, binance_usdm, binance_coinm, coinbase, kraken,
                                                               okx, bybit)
                            for venue in (package.VENUE, *package.VARIANTS)}


class UnknownVenue(KeyError):
    def __str__(self) -> str:
        return f"unknown venue {self.args[0]!r} (known: {', '.join(VENUES)})"


def venue(name: str) -> Venue:
    """The venue called `name`; raises UnknownVenue naming the known ones."""
    try:
        return VENUES[name]
    except KeyError:
        raise UnknownVenue(name) from None


def by_cryptofeed(exchange: str) -> Venue:
    """The venue a cryptofeed recording of `exchange` (e.g. BINANCE_US) was made on."""
    for candidate in VENUES.values():
        if candidate.cryptofeed and candidate.cryptofeed == exchange.upper():
            return candidate
    known = ", ".join(v.cryptofeed for v in VENUES.values() if v.cryptofeed)
    raise UnknownVenue(f"cryptofeed {exchange} (importable: {known})")
