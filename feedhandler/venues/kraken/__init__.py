"""Kraken spot WebSocket v2: everything about the venue in one package (protocol data and messages
in `protocol`, the numba decoder and step in `decoder` (it also reads v1 frames of older
recordings), the Python side of the feed in `feed`, the simulator's encoder in `simulator`),
exported as `VENUE`."""
from ..base import Venue
from .feed import KrakenFeed
from .protocol import LIMITS, KrakenProtocol, parse_instruments
from .simulator import KrakenV2Encoder

VENUE = Venue(
    name="kraken",
    protocol=KrakenFeed.PROTOCOL,
    ws_url="wss://ws.kraken.com/v2",
    rest_url="https://api.kraken.com",
    limits=LIMITS,
    instruments_path="/0/public/AssetPairs",
    parse_instruments=parse_instruments,
    feed=KrakenFeed,
    encoder=KrakenV2Encoder,
    symbol_form="{base}/{quote}",
    sample_symbol=("BTC/USD", "BTC", "USD"),
    cryptofeed="KRAKEN",
    notes="Kraken spot WebSocket v2",
)
VARIANTS = ()

__all__ = ["VENUE", "VARIANTS", "KrakenFeed", "KrakenProtocol", "KrakenV2Encoder"]
