"""Binance spot: everything about the venue in one package (protocol data and messages in
`protocol`, the numba decoder and step in `decoder`, the Python side of the feed in `feed`, the
simulator's encoder in `simulator`), exported as `VENUE`, and its variants as data."""
from ..base import Venue
from .feed import BinanceFeed
from .protocol import LIMITS, BinanceProtocol, parse_instruments
from .simulator import BinanceEncoder

VENUE = Venue(
    name="binance",
    protocol=BinanceFeed.PROTOCOL,
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    limits=LIMITS,
    instruments_path="/api/v3/exchangeInfo",
    parse_instruments=parse_instruments,
    feed=BinanceFeed,
    encoder=BinanceEncoder,
    symbol_form="{base}{quote}",
    sample_symbol=("BTCUSDT", "BTC", "USDT"),
    cryptofeed="BINANCE",
    notes="Binance spot, combined streams",
)
# Same protocol, other hosts: data-stream.binance.vision and the testnet from Binance's spot API docs
# (web-socket-streams.md, rest-api.md); Binance.US as its own docs and public clients name it
VARIANTS = (
    VENUE.variant("binance-vision", "wss://data-stream.binance.vision", "https://data-api.binance.vision",
                  "Binance spot market data only (no user data)"),
    VENUE.variant("binance-testnet", "wss://stream.testnet.binance.vision", "https://testnet.binance.vision",
                  "Binance spot test network"),
    VENUE.variant("binance-us", "wss://stream.binance.us:9443", "https://api.binance.us", "Binance.US spot",
                  cryptofeed="BINANCE_US"),
)

__all__ = ["VENUE", "VARIANTS", "BinanceFeed", "BinanceProtocol", "BinanceEncoder"]
