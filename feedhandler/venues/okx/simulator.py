"""The simulator's OKX encoder: a synthetic market step as the `books` and `trades` pushes OKX
would send, chained by seqId/prevSeqId, with the checksum 0 OKX sends since 2026-06-23 (or, with
`checksum=True`, the CRC32 of the top 25 as older recordings carry)."""
from __future__ import annotations

import zlib

from ...sim_market import ASK, BID, Market, Step
from ..encoding import collapsed, wire
from .protocol import BOOK_DEPTH


def checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's checksum of the top 25 wire strings a side, best first: `bid:size:ask:size:...`
    interleaved (a shorter side is skipped), CRC32 as a signed int32."""
    fields = []
    for k in range(25):
        for side in (bids, asks):
            if k < len(side):
                fields.extend(side[k])
    crc = zlib.crc32(":".join(fields).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class OkxEncoder:
    """OKX `books` (400 levels; the synthetic market is shallower) and `trades` for one instrument."""

    def __init__(self, symbol: str, px_dec: int, qty_dec: int, checksum: bool = False):
        self.symbol, self.px_dec, self.qty_dec, self.with_checksum = symbol, px_dec, qty_dec, checksum
        self.seq = 0
        self.trade_id = 0

    def _levels(self, rows) -> str:
        return ",".join(f'["{wire(p, self.px_dec)}","{wire(q, self.qty_dec)}","0","1"]' for p, q in rows)

    def _book(self, market: Market, action: str, bids, asks, ts_ns: int) -> bytes:
        """A snapshot is the book at the current seqId (prevSeqId -1), so that any number of connections
        can start from it while the updates every one of them receives chain on: an update takes the
        next seqId."""
        prev = -1 if action == "snapshot" else self.seq
        self.seq += action != "snapshot"
        crc = 0
        if self.with_checksum:
            crc = checksum(*([(wire(p, self.px_dec), wire(q, self.qty_dec)) for p, q in market.top(side, 25)]
                             for side in (BID, ASK)))
        return (f'{{"arg":{{"channel":"books","instId":"{self.symbol}"}},"action":"{action}","data":[{{'
                f'"asks":[{self._levels(asks)}],"bids":[{self._levels(bids)}],"ts":"{ts_ns // 1_000_000}",'
                f'"checksum":{crc},"prevSeqId":{prev},"seqId":{self.seq}}}]}}').encode()

    def snapshot(self, market: Market, ts_ns: int = 0) -> bytes:
        return self._book(market, "snapshot", market.top(BID, BOOK_DEPTH), market.top(ASK, BOOK_DEPTH), ts_ns)

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        frames = []
        for trade in step.trades:
            self.trade_id += 1
            frames.append((f'{{"arg":{{"channel":"trades","instId":"{self.symbol}"}},"data":[{{'
                           f'"instId":"{self.symbol}","tradeId":"{self.trade_id}",'
                           f'"px":"{wire(trade.price, self.px_dec)}","sz":"{wire(trade.qty, self.qty_dec)}",'
                           f'"side":"{"buy" if trade.aggressor > 0 else "sell"}","ts":"{ts_ns // 1_000_000}",'
                           f'"count":"1","source":"0","seqId":{self.trade_id}}}]}}').encode())
        changes = collapsed(step)
        if changes:
            bids = [(p, q) for (side, p), q in changes.items() if side == BID]
            asks = [(p, q) for (side, p), q in changes.items() if side == ASK]
            frames.append(self._book(market, "update", bids, asks, ts_ns))
        return frames
