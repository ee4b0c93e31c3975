"""OKX v5 public (SPOT, SWAP, FUTURES): everything about the venue in one package (protocol data
and messages in `protocol`, the numba decoder and step in `decoder`, the Python side of the feed in
`feed`, the simulator's encoder in `simulator`), exported as `VENUE`."""
from ...instruments import FUTURE, PERPETUAL
from ..base import Venue
from .feed import OkxFeed
from .protocol import LIMITS, OkxProtocol, parse_instruments
from .simulator import OkxEncoder

VENUE = Venue(
    name="okx",
    protocol=OkxFeed.PROTOCOL,
    ws_url="wss://ws.okx.com:8443/ws/v5/public",
    rest_url="https://www.okx.com",
    limits=LIMITS,
    instruments_path="/api/v5/public/instruments?instType=SPOT",
    parse_instruments=parse_instruments,
    feed=OkxFeed,
    encoder=OkxEncoder,
    symbol_form="{base}-{quote}",
    sample_symbol=("BTC-USDT", "BTC", "USDT"),
    cryptofeed="OKX",
    notes="OKX v5 public: books (400), trades, bbo-tbt, funding, mark, index, open interest, liquidations",
    markets=((PERPETUAL, "/api/v5/public/instruments?instType=SWAP", "{base}-{quote}-SWAP"),
             (FUTURE, "/api/v5/public/instruments?instType=FUTURES", "")),  # a future's date is metadata only
)
VARIANTS = ()

__all__ = ["VENUE", "VARIANTS", "OkxFeed", "OkxProtocol", "OkxEncoder"]
