"""The simulator's Kraken v2 encoder: a synthetic market step as the `book` and `trade` messages
Kraken would send at a subscribed depth, with the CRC32 of the client's truncated view."""
from __future__ import annotations

import zlib

from shm.fixedpoint import format_decimal

from ...sim_market import ASK, BID, Market, Step
from ..encoding import rfc3339, view_changes


class KrakenV2Encoder:
    """Kraken v2 `book` at a subscribed depth: the server keeps the client's truncated view, sends
    the levels that changed in it (levels entering scope included) and the CRC32 of its top 10."""

    def __init__(self, symbol: str, px_dec: int, qty_dec: int, depth: int = 10):
        self.symbol, self.px_dec, self.qty_dec, self.depth = symbol, px_dec, qty_dec, depth
        self.view: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.trade_id = 0

    def _levels(self, rows) -> str:
        return ",".join(f'{{"price":{format_decimal(p, self.px_dec)},"qty":{format_decimal(q, self.qty_dec)}}}'
                        for p, q in rows)

    def _message(self, kind: str, bids, asks) -> bytes:
        # JSON numbers printed at the instrument's precisions, as Kraken prints them
        return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{self.symbol}",'
                f'"bids":[{self._levels(bids)}],"asks":[{self._levels(asks)}],"checksum":{self.checksum()}}}]}}'
                ).encode()

    def checksum(self) -> int:
        text = []
        for side in (ASK, BID):
            for price in sorted(self.view[side], reverse=side == BID)[:10]:
                for value, decimals in ((price, self.px_dec), (self.view[side][price], self.qty_dec)):
                    text.append(format_decimal(value, decimals).replace(".", "").lstrip("0"))
        return zlib.crc32("".join(text).encode())

    def snapshot(self, market: Market, ts_ns: int = 0) -> bytes:
        self.view = tuple(dict(market.top(side, self.depth)) for side in (BID, ASK))
        return self._message("snapshot", market.top(BID, self.depth), market.top(ASK, self.depth))

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        frames = []
        for trade in step.trades:
            self.trade_id += 1
            frames.append((f'{{"channel":"trade","type":"update","data":[{{"symbol":"{self.symbol}",'
                           f'"side":"{"buy" if trade.aggressor > 0 else "sell"}",'
                           f'"price":{format_decimal(trade.price, self.px_dec)},'
                           f'"qty":{format_decimal(trade.qty, self.qty_dec)},"ord_type":"market",'
                           f'"trade_id":{self.trade_id},"timestamp":"{rfc3339(ts_ns)}"}}]}}').encode())
        bids, asks = view_changes(self.view, market, self.depth)
        if bids or asks:
            frames.append(self._message("update", bids, asks))
        return frames
