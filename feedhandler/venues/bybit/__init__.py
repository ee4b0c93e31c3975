"""Bybit v5 public (spot, linear, inverse): everything about the venue in one package (protocol data
and messages in `protocol`, the numba decoder and step in `decoder`, the Python side of the feed in
`feed`, the simulator's encoder in `simulator`), exported as `VENUE` (spot) and `VARIANTS` (linear,
inverse): a symbol exists only on its category's socket, so each category is a venue of its own."""
from dataclasses import replace

from ..base import Venue
from .feed import BybitFeed
from .protocol import LIMITS, BybitProtocol, parse_instruments
from .simulator import BybitEncoder

VENUE = Venue(
    name="bybit",
    protocol=BybitFeed.PROTOCOL,
    ws_url="wss://stream.bybit.com/v5/public/spot",
    rest_url="https://api.bybit.com",
    limits=LIMITS,
    instruments_path="/v5/market/instruments-info?category=spot",
    parse_instruments=parse_instruments,
    feed=BybitFeed,
    encoder=BybitEncoder,
    symbol_form="{base}{quote}",
    sample_symbol=("BTCUSDT", "BTC", "USDT"),
    notes="Bybit v5 public spot: orderbook and publicTrade",
)
VARIANTS = (
    replace(VENUE, name="bybit_linear", ws_url="wss://stream.bybit.com/v5/public/linear",
            instruments_path="/v5/market/instruments-info?category=linear&limit=1000",
            notes="Bybit v5 public linear (USDT/USDC perpetuals and futures): quantities in the base coin"),
    replace(VENUE, name="bybit_inverse", ws_url="wss://stream.bybit.com/v5/public/inverse",
            instruments_path="/v5/market/instruments-info?category=inverse&limit=1000",
            sample_symbol=("BTCUSD", "BTC", "USD"),
            notes="Bybit v5 public inverse (perpetuals and futures): quantities in USD"),
)

__all__ = ["VENUE", "VARIANTS", "BybitFeed", "BybitProtocol", "BybitEncoder"]
