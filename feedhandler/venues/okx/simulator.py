"""The simulator's OKX encoder: a synthetic market step as the `books` and `trades` pushes OKX
would send, chained by seqId/prevSeqId, with the checksum 0 OKX sends since 2026-06-23 (or, with
`checksum=True`, the CRC32 of the top 25 as older recordings carry); the top of book as `bbo-tbt`
when it changed; and, on the simulator's schedule, `funding-rate`, `mark-price`, `open-interest`,
`liquidation-orders` and `index-tickers` pushes in the documented shapes (derivatives-protocols.md
§2.4, §2.8)."""
from __future__ import annotations

import json
import zlib
from decimal import Decimal

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
        self.bbo_seq = 0
        self.last_top: tuple | None = None

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

    def _push(self, channel: str, item: dict) -> bytes:
        return json.dumps({"arg": {"channel": channel, "instId": self.symbol}, "data": [item]},
                          separators=(",", ":")).encode()

    def bbo(self, market: Market, ts_ns: int) -> bytes | None:
        """`bbo-tbt` when the top of the book changed since the last one (else None)."""
        top = tuple(tuple(market.top(side, 1)) for side in (BID, ASK))
        if top == self.last_top:
            return None
        self.last_top = top
        self.bbo_seq += 1
        bids, asks = ([[wire(p, self.px_dec), wire(q, self.qty_dec), "0", "1"] for p, q in levels] for levels in top)
        return self._push("bbo-tbt", {"asks": asks, "bids": bids, "ts": str(ts_ns // 1_000_000), "seqId": self.bbo_seq})

    def funding_rate(self, rate: str, funding_ms: int, interval_ms: int, ts_ns: int) -> bytes:
        """`funding-rate`: `rate` paid at `funding_ms`, the next period `interval_ms` later."""
        return self._push("funding-rate", {
            "formulaType": "withRate", "fundingRate": rate, "fundingTime": str(funding_ms), "impactValue": "",
            "instId": self.symbol, "instType": "SWAP", "interestRate": "0.0001", "maxFundingRate": "0.00375",
            "method": "current_period", "minFundingRate": "-0.00375", "nextFundingRate": "",
            "nextFundingTime": str(funding_ms + interval_ms), "premium": rate, "settFundingRate": rate,
            "settState": "settled", "ts": str(ts_ns // 1_000_000)})

    def mark_price(self, market: Market, inst_type: str, ts_ns: int) -> bytes:
        """`mark-price` at the book's mid."""
        return self._push("mark-price", {"instType": inst_type, "instId": self.symbol,
                                         "markPx": wire(market.mid(), self.px_dec), "ts": str(ts_ns // 1_000_000)})

    def open_interest(self, contracts: int, contract_size: str, inst_type: str, ts_ns: int) -> bytes:
        """`open-interest` of `contracts` (a mantissa at the lot's decimals), in coin too."""
        oi = wire(contracts, self.qty_dec)
        return self._push("open-interest", {"instId": self.symbol, "instType": inst_type, "oi": oi,
                                            "oiCcy": str(Decimal(oi) * Decimal(contract_size)),
                                            "ts": str(ts_ns // 1_000_000)})

    def index_ticker(self, index: str, price: str, ts_ns: int) -> bytes:
        """An `index-tickers` push of `index` (keyed by the index, not this encoder's instrument)."""
        return json.dumps({"arg": {"channel": "index-tickers", "instId": index}, "data": [{
            "instId": index, "idxPx": price, "high24h": price, "low24h": price, "open24h": price,
            "sodUtc0": price, "sodUtc8": price, "ts": str(ts_ns // 1_000_000)}]}, separators=(",", ":")).encode()

    def liquidation(self, side: str, price: int, qty: int, inst_type: str, family: str, ts_ns: int) -> bytes:
        """A `liquidation-orders` push (by instType): one order of `side` (buy closes a short)."""
        detail = {"bkLoss": "0", "bkPx": wire(price, self.px_dec), "ccy": "",
                  "posSide": "short" if side == "buy" else "long", "side": side, "sz": wire(qty, self.qty_dec),
                  "ts": str(ts_ns // 1_000_000)}
        return json.dumps({"arg": {"channel": "liquidation-orders", "instType": inst_type},
                           "data": [{"details": [detail], "instFamily": family, "instId": self.symbol,
                                     "instType": inst_type, "uly": family}]}, separators=(",", ":")).encode()
