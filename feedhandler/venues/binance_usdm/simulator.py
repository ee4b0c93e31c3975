"""The simulator's Binance futures encoder: spot's numbering, in the futures shapes of
derivatives-protocols.md §1.4 (depthUpdate with T and pu, aggTrade, a snapshot with E and T), and the
market-data streams: bookTicker on every change of the top of the book (with the book's update id),
markPriceUpdate (mark at the mid, the index a little off it and printed to 8 decimals as Binance
prints it, a funding rate, the next funding time on the 8 h grid), forceOrder (a filled IOC
liquidation at the touch it takes), and the REST open interest."""
from __future__ import annotations

import numpy as np

from shm.fixedpoint import format_decimal

from ...sim_market import ASK, BID, Market, Step, Trade
from ..base import compact_json
from ..binance.simulator import BinanceEncoder

FUNDING_INTERVAL_MS = 8 * 3600 * 1000  # funding is paid at 00:00, 08:00 and 16:00 UTC
PRINTED_DECIMALS = 8  # mark, index and settle prices are printed with 8 decimals


class BinanceFuturesEncoder(BinanceEncoder):
    def __init__(self, symbol: str, px_dec: int, qty_dec: int, first_update_id: int = 1000):
        super().__init__(symbol, px_dec, qty_dec, first_update_id)
        self.top: tuple | None = None  # the best bid and ask the last bookTicker gave

    def snapshot(self, market: Market, ts_ns: int = 0, depth: int = 1000) -> bytes:
        """The body of GET /fapi/v1/depth (or /dapi/v1/depth) ?symbol=S&limit=depth."""
        ts_ms = ts_ns // 1_000_000
        return compact_json({"lastUpdateId": self.update_id, "E": ts_ms, "T": ts_ms,
                             **self.book(market, depth)})

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        """Spot's frames (trades, then the depthUpdate), then a bookTicker if the top of the book changed."""
        frames = super().frames(market, step, ts_ns)
        top = (market.top(BID, 1), market.top(ASK, 1))
        if top != self.top and top[0] and top[1]:
            self.top = top
            frames.append(compact_json(self.book_ticker_message(top[0][0], top[1][0], ts_ns // 1_000_000)))
        return frames

    def trade_message(self, trade: Trade, ts_ms: int) -> dict:
        return {"stream": f"{self.symbol.lower()}@aggTrade", "data": {
            "e": "aggTrade", "E": ts_ms, "s": self.symbol, "a": self.trade_id, "p": format_decimal(trade.price, self.px_dec),
            "q": format_decimal(trade.qty, self.qty_dec), "f": self.trade_id, "l": self.trade_id, "T": ts_ms,
            "m": trade.aggressor < 0}}

    def depth_message(self, previous: int, changes: dict[tuple[int, int], int], ts_ms: int) -> dict:
        """Update ids previous+1 .. self.update_id, pu the previous event's u."""
        return {"stream": f"{self.symbol.lower()}@depth@100ms", "data": {
            "e": "depthUpdate", "E": ts_ms, "T": ts_ms, "s": self.symbol, "U": previous + 1, "u": self.update_id,
            "pu": previous, **self.sides(changes)}}

    def book_ticker_message(self, bid: tuple[int, int], ask: tuple[int, int], ts_ms: int) -> dict:
        """The best bid and ask (price, qty) as of the book's last update id."""
        (bid_px, bid_qty), (ask_px, ask_qty) = self._level(*bid), self._level(*ask)
        return {"stream": f"{self.symbol.lower()}@bookTicker", "data": {
            "e": "bookTicker", "u": self.update_id, "E": ts_ms, "T": ts_ms, "s": self.symbol,
            "b": bid_px, "B": bid_qty, "a": ask_px, "A": ask_qty}}

    def _printed(self, price: int) -> str:
        """A price mantissa (at least the instrument's decimals) with the 8 decimals Binance prints."""
        return format_decimal(price, max(PRINTED_DECIMALS, self.px_dec))

    def mark_price_message(self, market: Market, ts_ms: int, rng: np.random.Generator) -> dict:
        """markPrice@1s: the mark at the mid (on the tick), the index within 3 ticks of it at 8 decimals, a
        funding rate between -0.0002 and 0.0010, and the next funding time."""
        scale = 10 ** max(0, PRINTED_DECIMALS - self.px_dec)
        mark = market.mid() * scale
        index = mark + int(rng.integers(-3 * scale, 3 * scale + 1))
        return {"stream": f"{self.symbol.lower()}@markPrice@1s", "data": {
            "e": "markPriceUpdate", "E": ts_ms, "s": self.symbol, "p": self._printed(mark), "i": self._printed(index),
            "P": self._printed(index), "r": format_decimal(int(rng.integers(-20_000, 100_001)), 8),
            "T": (ts_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS}}

    def force_order_message(self, market: Market, ts_ms: int, rng: np.random.Generator) -> dict:
        """A liquidation of a random side, filled whole at the touch it takes (a SELL at the best bid);
        its limit price is a few ticks through it."""
        sell = bool(rng.random() < 0.5)
        touch = market.best(BID) if sell else market.best(ASK)
        limit = touch - 5 if sell else touch + 5
        qty = format_decimal(int(rng.integers(1, 500)), self.qty_dec)
        return {"stream": f"{self.symbol.lower()}@forceOrder", "data": {
            "e": "forceOrder", "E": ts_ms, "o": self.liquidation_order({
                "s": self.symbol, "S": "SELL" if sell else "BUY", "o": "LIMIT", "f": "IOC", "q": qty,
                "p": format_decimal(limit, self.px_dec), "ap": format_decimal(touch, self.px_dec), "X": "FILLED",
                "l": qty, "z": qty, "T": ts_ms})}}

    def open_interest(self, open_interest: int, ts_ns: int) -> bytes:
        """The body of GET /fapi/v1/openInterest?symbol=S (§1.6): `open_interest` at the quantity decimals."""
        return compact_json(self.open_interest_answer(format_decimal(open_interest, self.qty_dec), ts_ns // 1_000_000))

    def open_interest_answer(self, open_interest: str, ts_ms: int) -> dict:
        return {"openInterest": open_interest, "symbol": self.symbol, "time": ts_ms}

    def liquidation_order(self, order: dict) -> dict:
        """forceOrder's `o` as the venue prints it (COIN-M adds the pair)."""
        return order
