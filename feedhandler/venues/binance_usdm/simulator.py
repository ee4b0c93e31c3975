"""The simulator's Binance futures encoder: spot's numbering, in the futures shapes of
derivatives-protocols.md §1.4 (depthUpdate with T and pu, aggTrade, a snapshot with E and T)."""
from __future__ import annotations

from shm.fixedpoint import format_decimal

from ...sim_market import Market, Trade
from ..base import compact_json
from ..binance.simulator import BinanceEncoder


class BinanceFuturesEncoder(BinanceEncoder):
    def snapshot(self, market: Market, ts_ns: int = 0, depth: int = 1000) -> bytes:
        """The body of GET /fapi/v1/depth (or /dapi/v1/depth) ?symbol=S&limit=depth."""
        ts_ms = ts_ns // 1_000_000
        return compact_json({"lastUpdateId": self.update_id, "E": ts_ms, "T": ts_ms,
                             **self.book(market, depth)})

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
