"""Binance USD-M futures: spot Binance's protocol with the futures data (`protocol`), the futures
decoder and book rule (`decoder`, pu-chained diffs), the feed (`feed`) and the simulator's encoder
(`simulator`), exported as `VENUE`. COIN-M (binance_coinm) reuses all of it with its own data.

Every configured instrument (the venue lists only perpetual and dated contracts) is subscribed to all
it has: its diff depth and bookTicker on the /public route, aggTrade, markPrice@1s and forceOrder on
/market (protocol.USDM), so each gives its book, trades, BBO, funding and liquidation records.
Open interest has no stream on Binance futures (only REST `GET /fapi/v1/openInterest`)."""
from ..base import Venue
from .feed import BinanceFuturesFeed
from .protocol import LIMITS, USDM, parse_instruments
from .simulator import BinanceFuturesEncoder

VENUE = Venue(
    name="binance_usdm",
    protocol=USDM,
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    limits=LIMITS,
    instruments_path="/fapi/v1/exchangeInfo",
    parse_instruments=parse_instruments,
    feed=BinanceFuturesFeed,
    encoder=BinanceFuturesEncoder,
    symbol_form="{base}{quote}",
    sample_symbol=("BTCUSDT", "BTC", "USDT"),
    cryptofeed="BINANCE_FUTURES",
    notes="Binance USD-M futures: books and BBO on /public; trades, funding, liquidations on /market",
)
VARIANTS: tuple[Venue, ...] = ()

__all__ = ["VENUE", "VARIANTS", "BinanceFuturesFeed", "BinanceFuturesEncoder"]
