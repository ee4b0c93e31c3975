"""The simulator's Coinbase Advanced Trade encoder: `level2` (l2_data) and `market_trades`
messages, numbered by one `sequence_num` per connection across channels."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

from shm.fixedpoint import format_decimal

from ...sim_market import ASK, BID, Market, Step
from ..base import compact_json
from ..encoding import collapsed, rfc3339


class CoinbaseAdvancedEncoder:
    """Coinbase Advanced Trade `level2` (l2_data) and `market_trades`, numbered by one
    `sequence_num` per connection across channels."""

    def __init__(self, product: str, px_dec: int, qty_dec: int, sequence: Iterator[int] | None = None):
        self.product, self.px_dec, self.qty_dec = product, px_dec, qty_dec
        self.sequence = itertools.count() if sequence is None else sequence  # shared by a connection's products
        self.trade_id = 0

    def _message(self, channel: str, ts_ns: int, events: list) -> bytes:
        return compact_json({"channel": channel, "client_id": "", "timestamp": rfc3339(ts_ns),
                      "sequence_num": next(self.sequence), "events": events})

    def _updates(self, rows, ts_ns: int) -> list[dict]:
        when = rfc3339(ts_ns)
        return [{"side": "bid" if side == BID else "offer", "event_time": when,
                 "price_level": format_decimal(p, self.px_dec), "new_quantity": format_decimal(q, self.qty_dec)}
                for side, p, q in rows]

    def snapshot(self, market: Market, ts_ns: int) -> bytes:
        rows = [(side, p, q) for side in (BID, ASK) for p, q in market.top(side, market.max_levels)]
        return self._message("l2_data", ts_ns, [{"type": "snapshot", "product_id": self.product,
                                                 "updates": self._updates(rows, ts_ns)}])

    def frames(self, market: Market, step: Step, ts_ns: int, trades: bool = True) -> list[bytes]:
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
                               "time": rfc3339(ts_ns)})
            frames.append(self._message("market_trades", ts_ns, [{"type": "update", "trades": trades}]))
        changes = collapsed(step)
        if changes:
            rows = [(side, p, q) for (side, p), q in changes.items()]
            frames.append(self._message("l2_data", ts_ns, [{"type": "update", "product_id": self.product,
                                                            "updates": self._updates(rows, ts_ns)}]))
        return frames
