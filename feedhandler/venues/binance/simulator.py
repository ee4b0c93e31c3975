"""The simulator's Binance encoder: a synthetic market step as the combined-stream frames and REST
depth body Binance would send, numbered with update ids so a client that follows the rules stays
in sync."""
from __future__ import annotations

from shm.fixedpoint import format_decimal

from ...sim_market import ASK, BID, Market, Step
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
        return compact_json({"lastUpdateId": self.update_id,
                      "bids": [self._level(p, q) for p, q in market.top(BID, depth)],
                      "asks": [self._level(p, q) for p, q in market.top(ASK, depth)]})

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        """One depthUpdate for the step's book changes (one update id per level), then its trades."""
        frames = []
        ts_ms = ts_ns // 1_000_000
        stream = self.symbol.lower()
        for trade in step.trades:
            self.trade_id += 1
            frames.append(compact_json({"stream": f"{stream}@trade", "data": {
                "e": "trade", "E": ts_ms, "s": self.symbol, "t": self.trade_id,
                "p": format_decimal(trade.price, self.px_dec), "q": format_decimal(trade.qty, self.qty_dec),
                "T": ts_ms, "m": trade.aggressor < 0}}))
        changes = collapsed(step)
        if changes:
            first = self.update_id + 1
            self.update_id += len(changes)
            frames.append(compact_json({"stream": f"{stream}@depth@100ms", "data": {
                "e": "depthUpdate", "E": ts_ms, "s": self.symbol, "U": first, "u": self.update_id,
                "b": [self._level(p, q) for (side, p), q in changes.items() if side == BID],
                "a": [self._level(p, q) for (side, p), q in changes.items() if side == ASK]}}))
        return frames
