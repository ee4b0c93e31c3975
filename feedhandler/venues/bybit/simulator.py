"""The simulator's Bybit v5 encoder: a synthetic market step as the `orderbook.{depth}` and
`publicTrade` pushes Bybit would send: a snapshot, then deltas of the client's view at the depth
(levels entering it included, levels leaving it as size "0"), `u` counting up by one from 1."""
from __future__ import annotations

from ...sim_market import Market, Step
from ..encoding import view_changes, wire
from .protocol import LIMITS


class BybitEncoder:
    """`orderbook.{depth}.{symbol}` and `publicTrade.{symbol}` of one instrument, linear-style
    (trade ids are UUID-shaped strings, as on linear and inverse)."""

    def __init__(self, symbol: str, px_dec: int, qty_dec: int, depth: int = LIMITS.default_book_depth):
        self.symbol, self.px_dec, self.qty_dec, self.depth = symbol, px_dec, qty_dec, depth
        self.view: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.update_id = 0
        self.seq = 0
        self.trade_id = 0

    def _levels(self, rows) -> str:
        return ",".join(f'["{wire(p, self.px_dec)}","{wire(q, self.qty_dec)}"]' for p, q in rows)

    def _book(self, kind: str, bids, asks, ts_ns: int) -> bytes:
        self.update_id += 1
        self.seq += 1
        ms = ts_ns // 1_000_000
        return (f'{{"topic":"orderbook.{self.depth}.{self.symbol}","type":"{kind}","ts":{ms},"data":{{'
                f'"s":"{self.symbol}","b":[{self._levels(bids)}],"a":[{self._levels(asks)}],'
                f'"u":{self.update_id},"seq":{self.seq}}},"cts":{ms}}}').encode()

    def snapshot(self, market: Market, ts_ns: int = 0) -> bytes:
        self.view = ({}, {})
        bids, asks = view_changes(self.view, market, self.depth)
        return self._book("snapshot", bids, asks, ts_ns)

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        frames = []
        ms = ts_ns // 1_000_000
        for trade in step.trades:
            self.trade_id += 1
            self.seq += 1
            frames.append((f'{{"topic":"publicTrade.{self.symbol}","type":"snapshot","ts":{ms},"data":[{{'
                           f'"T":{ms},"s":"{self.symbol}","S":"{"Buy" if trade.aggressor > 0 else "Sell"}",'
                           f'"v":"{wire(trade.qty, self.qty_dec)}","p":"{wire(trade.price, self.px_dec)}",'
                           f'"L":"PlusTick","i":"{self.trade_id:08x}-0000-4000-8000-000000000000","BT":false,'
                           f'"seq":{self.seq}}}]}}').encode())
        bids, asks = view_changes(self.view, market, self.depth)
        if bids or asks:
            frames.append(self._book("delta", bids, asks, ts_ns))
        return frames
