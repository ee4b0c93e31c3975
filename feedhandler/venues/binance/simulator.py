"""The simulator's Binance encoder: a synthetic market step as the combined-stream frames and REST
depth body Binance would send, numbered with update ids so a client that follows the rules stays
in sync."""
from __future__ import annotations

from shm.fixedpoint import format_decimal

from ...sim_market import ASK, BID, Market, Step, Trade
from ..base import compact_json
from ..encoding import collapsed


class BinanceEncoder:
    def __init__(self, symbol: str, px_dec: int, qty_dec: int, first_update_id: int = 1000):
        self.symbol, self.px_dec, self.qty_dec = symbol, px_dec, qty_dec
        self.update_id = first_update_id
        self.trade_id = 0

    def _level(self, price: int, qty: int) -> list[str]:
        return [format_decimal(price, self.px_dec), format_decimal(qty, self.qty_dec)]

    def snapshot(self, market: Market, ts_ns: int = 0, depth: int = 1000) -> bytes:
        """The body of GET /api/v3/depth?symbol=S&limit=depth."""
        return compact_json({"lastUpdateId": self.update_id, **self.book(market, depth)})

    def book(self, market: Market, depth: int) -> dict[str, list[list[str]]]:
        return {"bids": [self._level(p, q) for p, q in market.top(BID, depth)],
                "asks": [self._level(p, q) for p, q in market.top(ASK, depth)]}

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        """The step's trades, then one depthUpdate for its book changes (one update id per level)."""
        ts_ms = ts_ns // 1_000_000
        frames = []
        for trade in step.trades:
            self.trade_id += 1
            frames.append(compact_json(self.trade_message(trade, ts_ms)))
        changes = collapsed(step)
        if changes:
            previous = self.update_id
            self.update_id += len(changes)
            frames.append(compact_json(self.depth_message(previous, changes, ts_ms)))
        return frames

    def trade_message(self, trade: Trade, ts_ms: int) -> dict:
        return {"stream": f"{self.symbol.lower()}@trade", "data": {
            "e": "trade", "E": ts_ms, "s": self.symbol, "t": self.trade_id,
            "p": format_decimal(trade.price, self.px_dec), "q": format_decimal(trade.qty, self.qty_dec),
            "T": ts_ms, "m": trade.aggressor < 0}}

    def depth_message(self, previous: int, changes: dict[tuple[int, int], int], ts_ms: int) -> dict:
        """Update ids previous+1 .. self.update_id."""
        return {"stream": f"{self.symbol.lower()}@depth@100ms", "data": {
            "e": "depthUpdate", "E": ts_ms, "s": self.symbol, "U": previous + 1, "u": self.update_id,
            **self.sides(changes)}}

    def sides(self, changes: dict[tuple[int, int], int]) -> dict[str, list[list[str]]]:
        return {"b": [self._level(p, q) for (side, p), q in changes.items() if side == BID],
                "a": [self._level(p, q) for (side, p), q in changes.items() if side == ASK]}
