"""Binance COIN-M futures: the USD-M package's protocol, decoder, feed and encoder with COIN-M's
data (derivatives-protocols.md §1.1-1.7): `wss://dstream.binance.com`, unchanged by the 2026 USD-M
route split, so books, trades, bookTicker, markPrice@1s and forceOrder (every instrument gets them all)
share the combined `/stream`; REST `https://dapi.binance.com` (`/dapi/v1/depth`,
`/dapi/v1/exchangeInfo`, whose contractSize is USD per contract: quantities are contracts;
`/dapi/v1/openInterest`, polled as USD-M's, in contracts: UNCONFIRMED). The limits are USD-M's
(REQUEST_WEIGHT 6000 in one COIN-M example is UNCONFIRMED: the lower figure is kept)."""
from dataclasses import replace

from ..base import Venue, compact_json
from ..binance.protocol import BinanceProtocol
from ..binance_usdm import VENUE as USDM_VENUE
from ..binance_usdm.feed import BinanceFuturesFeed
from ..binance_usdm.protocol import (BOOK_TICKER_STREAM, DEPTH_STREAM, FORCE_ORDER_STREAM, MARK_PRICE_STREAM,
                                     OPEN_INTEREST_POLL_S, OPEN_INTEREST_WEIGHT, OPEN_INTEREST_WEIGHT_PER_MINUTE,
                                     SNAPSHOT_WEIGHTS, TRADE_STREAM)
from ..binance_usdm.simulator import BinanceFuturesEncoder

COINM = BinanceProtocol(routes=(("/stream", (DEPTH_STREAM, TRADE_STREAM, BOOK_TICKER_STREAM, MARK_PRICE_STREAM,
                                             FORCE_ORDER_STREAM)),),
                        snapshot_path="/dapi/v1/depth", snapshot_weights=SNAPSHOT_WEIGHTS,
                        poll_path="/dapi/v1/openInterest", poll_weight=OPEN_INTEREST_WEIGHT,
                        poll_s=OPEN_INTEREST_POLL_S, poll_weight_per_minute=OPEN_INTEREST_WEIGHT_PER_MINUTE)


class BinanceCoinmFeed(BinanceFuturesFeed):
    """COIN-M books: the futures feed with COIN-M's protocol data."""

    PROTOCOL = COINM


class BinanceCoinmEncoder(BinanceFuturesEncoder):
    """COIN-M's shapes (derivatives-protocols.md §1.4, §1.6): a depthUpdate and a forceOrder's order name the
    pair (`ps`) after the symbol, and the depth answer names both."""

    def snapshot(self, market, ts_ns: int = 0, depth: int = 1000) -> bytes:
        ts_ms = ts_ns // 1_000_000
        return compact_json({"lastUpdateId": self.update_id, "symbol": self.symbol, "pair": self.pair, "E": ts_ms,
                             "T": ts_ms, **self.book(market, depth)})

    def depth_message(self, previous: int, changes: dict[tuple[int, int], int], ts_ms: int) -> dict:
        message = super().depth_message(previous, changes, ts_ms)
        event = message["data"]
        message["data"] = {**{k: event.pop(k) for k in ("e", "E", "T", "s")}, "ps": self.pair, **event}
        return message

    def open_interest_answer(self, open_interest: str, ts_ms: int) -> dict:
        """/dapi/v1/openInterest adds the pair and the contract type (§1.6, UNCONFIRMED)."""
        return {"symbol": self.symbol, "pair": self.pair, "openInterest": open_interest, "contractType": "PERPETUAL",
                "time": ts_ms}

    def liquidation_order(self, order: dict) -> dict:
        """COIN-M's forceOrder names the pair (`o.ps`, §1.4) after the symbol."""
        return {"s": order.pop("s"), "ps": self.pair, **order}

    @property
    def pair(self) -> str:
        """BTCUSD of BTCUSD_PERP or BTCUSD_211231."""
        return self.symbol.partition("_")[0]


VENUE = replace(USDM_VENUE, name="binance_coinm", protocol=COINM, ws_url="wss://dstream.binance.com",
                rest_url="https://dapi.binance.com", instruments_path="/dapi/v1/exchangeInfo", feed=BinanceCoinmFeed,
                encoder=BinanceCoinmEncoder,
                symbol_form="{base}{quote}_PERP", sample_symbol=("BTCUSD_PERP", "BTC", "USD"),
                cryptofeed="BINANCE_DELIVERY", notes="Binance COIN-M futures: quantities in contracts of contractSize USD")
VARIANTS: tuple[Venue, ...] = ()

__all__ = ["VENUE", "VARIANTS", "BinanceCoinmFeed", "BinanceCoinmEncoder"]
