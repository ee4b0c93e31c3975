"""Coinbase Advanced Trade: everything about the venue in one package (protocol data and messages
in `protocol`, the numba decoder and step in `decoder` (it also reads the Exchange feed of older
recordings), the Python side of the feed in `feed`, the simulator's encoder in `simulator`),
exported as `VENUE`."""
from ..base import Venue
from .feed import CoinbaseFeed
from .protocol import LIMITS, CoinbaseProtocol, parse_instruments
from .simulator import CoinbaseAdvancedEncoder

VENUE = Venue(
    name="coinbase",
    protocol=CoinbaseFeed.PROTOCOL,
    ws_url="wss://advanced-trade-ws.coinbase.com",
    rest_url="https://api.coinbase.com",
    limits=LIMITS,
    instruments_path="/api/v3/brokerage/market/products",
    parse_instruments=parse_instruments,
    feed=CoinbaseFeed,
    encoder=CoinbaseAdvancedEncoder,
    symbol_form="{base}-{quote}",
    sample_symbol=("BTC-USD", "BTC", "USD"),
    cryptofeed="COINBASE",
    notes="Coinbase Advanced Trade market data (public channels)",
)
VARIANTS = ()

__all__ = ["VENUE", "VARIANTS", "CoinbaseFeed", "CoinbaseProtocol", "CoinbaseAdvancedEncoder"]
