"""The simulator's venue encoders: a `Market` step as the frames each venue would send, in the live
message shapes (Binance combined stream + REST depth, Kraken WebSocket v2, Coinbase Advanced Trade).

Each encoder keeps the state its venue numbers frames with (Binance update ids, Coinbase
`sequence_num`, the Kraken client's truncated view and its CRC32), so a client that follows the
venue's rules stays in sync, and a fault injected by the simulator breaks exactly that rule.
"""
from __future__ import annotations

import itertools
import json
import time
import zlib
from collections.abc import Iterator

from shm.fixedpoint import format_decimal

from .market import ASK, BID, Market, Step


def _collapsed(step: Step) -> dict[tuple[int, int], int]:
    """The last quantity of every (side, price) a step touched, in first-touched order."""
    last: dict[tuple[int, int], int] = {}
    for side, price, qty in step.changes:
        last[(side, price)] = qty
    return last


def _json(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _rfc3339(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class BinanceEncoder:
    def __init__(self, symbol: str, px_dec: int, qty_dec: int, first_update_id: int = 1000):
        self.symbol, self.px_dec, self.qty_dec = symbol, px_dec, qty_dec
        self.update_id = first_update_id
        self.trade_id = 0

    def _level(self, price: int, qty: int) -> list[str]:
        return [format_decimal(price, self.px_dec), format_decimal(qty, self.qty_dec)]

    def snapshot(self, market: Market, depth: int = 1000) -> bytes:
        """The body of GET /api/v3/depth?symbol=S&limit=depth."""
        return _json({"lastUpdateId": self.update_id,
                      "bids": [self._level(p, q) for p, q in market.top(BID, depth)],
                      "asks": [self._level(p, q) for p, q in market.top(ASK, depth)]})

    def frames(self, step: Step, ts_ns: int) -> list[bytes]:
        """One depthUpdate for the step's book changes (one update id per level), then its trades."""
        frames = []
        ts_ms = ts_ns // 1_000_000
        stream = self.symbol.lower()
        for trade in step.trades:
            self.trade_id += 1
            frames.append(_json({"stream": f"{stream}@trade", "data": {
                "e": "trade", "E": ts_ms, "s": self.symbol, "t": self.trade_id,
                "p": format_decimal(trade.price, self.px_dec), "q": format_decimal(trade.qty, self.qty_dec),
                "T": ts_ms, "m": trade.aggressor < 0}}))
        changes = _collapsed(step)
        if changes:
            first = self.update_id + 1
            self.update_id += len(changes)
            frames.append(_json({"stream": f"{stream}@depth@100ms", "data": {
                "e": "depthUpdate", "E": ts_ms, "s": self.symbol, "U": first, "u": self.update_id,
                "b": [self._level(p, q) for (side, p), q in changes.items() if side == BID],
                "a": [self._level(p, q) for (side, p), q in changes.items() if side == ASK]}}))
        return frames


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

    def snapshot(self, market: Market) -> bytes:
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
                           f'"trade_id":{self.trade_id},"timestamp":"{_rfc3339(ts_ns)}"}}]}}').encode())
        changed = []
        for side in (BID, ASK):
            new = dict(market.top(side, self.depth))
            old = self.view[side]
            changed.append([(p, q) for p, q in new.items() if old.get(p) != q] + [(p, 0) for p in old if p not in new])
            self.view[side].clear()
            self.view[side].update(new)
        if changed[BID] or changed[ASK]:
            frames.append(self._message("update", changed[BID], changed[ASK]))
        return frames


class CoinbaseAdvancedEncoder:
    """Coinbase Advanced Trade `level2` (l2_data) and `market_trades`, numbered by one
    `sequence_num` per connection across channels."""

    def __init__(self, product: str, px_dec: int, qty_dec: int, sequence: Iterator[int] | None = None):
        self.product, self.px_dec, self.qty_dec = product, px_dec, qty_dec
        self.sequence = itertools.count() if sequence is None else sequence  # shared by a connection's products
        self.trade_id = 0

    def _message(self, channel: str, ts_ns: int, events: list) -> bytes:
        return _json({"channel": channel, "client_id": "", "timestamp": _rfc3339(ts_ns),
                      "sequence_num": next(self.sequence), "events": events})

    def _updates(self, rows, ts_ns: int) -> list[dict]:
        when = _rfc3339(ts_ns)
        return [{"side": "bid" if side == BID else "offer", "event_time": when,
                 "price_level": format_decimal(p, self.px_dec), "new_quantity": format_decimal(q, self.qty_dec)}
                for side, p, q in rows]

    def snapshot(self, market: Market, ts_ns: int) -> bytes:
        rows = [(side, p, q) for side in (BID, ASK) for p, q in market.top(side, market.max_levels)]
        return self._message("l2_data", ts_ns, [{"type": "snapshot", "product_id": self.product,
                                                 "updates": self._updates(rows, ts_ns)}])

    def frames(self, step: Step, ts_ns: int, trades: bool = True) -> list[bytes]:
        """The step's market_trades message (when subscribed: every message takes a sequence
        number), then its l2_data update."""
        frames = []
        if step.trades and trades:
            trades = []
            for trade in step.trades:
                self.trade_id += 1
                trades.append({"trade_id": str(self.trade_id), "product_id": self.product,
                               "price": format_decimal(trade.price, self.px_dec),
                               "size": format_decimal(trade.qty, self.qty_dec),
                               "side": "SELL" if trade.aggressor > 0 else "BUY",  # the maker's side
                               "time": _rfc3339(ts_ns)})
            frames.append(self._message("market_trades", ts_ns, [{"type": "update", "trades": trades}]))
        changes = _collapsed(step)
        if changes:
            rows = [(side, p, q) for (side, p), q in changes.items()]
            frames.append(self._message("l2_data", ts_ns, [{"type": "update", "product_id": self.product,
                                                            "updates": self._updates(rows, ts_ns)}]))
        return frames
