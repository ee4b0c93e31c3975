"""The simulator's Bybit v5 encoders: a synthetic market as the pushes Bybit would send
(../shared/docs/derivatives-protocols.md §3.4-3.8).

`BybitEncoder`: `orderbook.{depth}` (a snapshot, then deltas of the client's view at the depth, levels
entering it included, levels leaving it as size "0", `u` counting up by one from 1; level 1 is
snapshot-only, as the doc says of the live feed) and `publicTrade`. One encoder serves every
connection on its topic: a snapshot is the view at the current `u`, so the deltas every connection
receives chain on. `BybitStatsEncoder`: `tickers` (a snapshot, then deltas of the changed fields only)
and `allLiquidation` (the side of the position liquidated) of a linear or inverse contract."""
from __future__ import annotations

import json

import numpy as np

from ...sim_market import ASK, BID, Market, Step
from ..encoding import view_changes, wire
from .protocol import LIMITS

FUNDING_PERIOD_MS = 8 * 3600 * 1000
RATE_DECIMALS = 6  # a funding rate as Bybit prints it: "-0.000212"


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
        self.seq += 1
        ms = ts_ns // 1_000_000
        return (f'{{"topic":"orderbook.{self.depth}.{self.symbol}","type":"{kind}","ts":{ms},"data":{{'
                f'"s":"{self.symbol}","b":[{self._levels(bids)}],"a":[{self._levels(asks)}],'
                f'"u":{self.update_id},"seq":{self.seq}}},"cts":{ms}}}').encode()

    def _whole_view(self, ts_ns: int) -> bytes:
        return self._book("snapshot", sorted(self.view[BID].items(), reverse=True), sorted(self.view[ASK].items()),
                          ts_ns)

    def snapshot(self, market: Market, ts_ns: int = 0) -> bytes:
        """The view at the current `u` for a new subscriber; a view nobody kept current catches up first
        (taking the next `u`), so that the next delta follows this snapshot on every connection."""
        bids, asks = view_changes(self.view, market, self.depth)
        if bids or asks or not self.update_id:
            self.update_id += 1
        return self._whole_view(ts_ns)

    def restart(self, market: Market, ts_ns: int) -> bytes:
        """A service restart (§3.5): the whole book with `u` 1, the numbering starting over from it."""
        view_changes(self.view, market, self.depth)
        self.update_id = 1
        return self._whole_view(ts_ns)

    def delta(self, market: Market, ts_ns: int) -> bytes | None:
        """The view's changes since the last message as the next `u` (level 1: the whole view, as a
        snapshot); None when the view did not change."""
        bids, asks = view_changes(self.view, market, self.depth)
        if not (bids or asks):
            return None
        self.update_id += 1
        return self._whole_view(ts_ns) if self.depth == 1 else self._book("delta", bids, asks, ts_ns)

    def trades(self, step: Step, ts_ns: int) -> list[bytes]:
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
        return frames

    def frames(self, market: Market, step: Step, ts_ns: int) -> list[bytes]:
        """A step's trades, then its book delta."""
        frames = self.trades(step, ts_ns)
        book = self.delta(market, ts_ns)
        return frames + ([book] if book is not None else [])


class BybitStatsEncoder:
    """`tickers.{symbol}` and `allLiquidation.{symbol}` of one linear or inverse contract: mark and
    index follow the market's mid, the funding rate and the open interest wander, funding is paid
    every 8 h."""

    def __init__(self, symbol: str, px_dec: int, qty_dec: int, seed: int = 1):
        self.symbol, self.px_dec, self.qty_dec = symbol, px_dec, qty_dec
        self.rng = np.random.default_rng(seed)
        self.fields: dict[str, str] = {}
        self.rate = int(self.rng.integers(-200, 300))  # RATE_DECIMALS
        self.open_interest = 10 ** (qty_dec + 5)
        self.cross_seq = 0
        self.ticks = 0

    def _current(self, market: Market, ts_ns: int) -> dict[str, str]:
        ms = ts_ns // 1_000_000
        mid = market.mid()
        index = mid + int(self.rng.integers(-2, 3))
        if self.rng.random() < 0.3:
            self.rate += int(self.rng.integers(-5, 6))
        if self.rng.random() < 0.3:
            step = 10 ** (self.qty_dec + 2)
            self.open_interest = max(10 ** self.qty_dec, self.open_interest + int(self.rng.integers(-step, step)))
        best_bid, best_ask = market.top(BID, 1)[0], market.top(ASK, 1)[0]
        return {"symbol": self.symbol, "lastPrice": wire(mid, self.px_dec), "markPrice": wire(mid, self.px_dec),
                "indexPrice": wire(index, self.px_dec), "openInterest": wire(self.open_interest, self.qty_dec),
                "fundingRate": wire(self.rate, RATE_DECIMALS),
                "nextFundingTime": str((ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS),
                "bid1Price": wire(best_bid[0], self.px_dec), "bid1Size": wire(best_bid[1], self.qty_dec),
                "ask1Price": wire(best_ask[0], self.px_dec), "ask1Size": wire(best_ask[1], self.qty_dec)}

    def _ticker(self, kind: str, data: dict[str, str], ts_ns: int) -> bytes:
        self.cross_seq += 1
        return json.dumps({"topic": f"tickers.{self.symbol}", "type": kind, "data": data, "cs": self.cross_seq,
                           "ts": ts_ns // 1_000_000}, separators=(",", ":")).encode()

    def ticker_snapshot(self, market: Market, ts_ns: int) -> bytes:
        """Every field, as a new subscriber's first message (§3.7)."""
        if not self.fields:
            self.fields = self._current(market, ts_ns)
        return self._ticker("snapshot", self.fields, ts_ns)

    def ticker_delta(self, market: Market, ts_ns: int) -> bytes | None:
        """The fields that changed since the last message, and the symbol; None when none did."""
        current = self._current(market, ts_ns)
        changed = {k: v for k, v in current.items() if self.fields.get(k) != v}
        self.fields = current
        return self._ticker("delta", {"symbol": self.symbol, **changed}, ts_ns) if changed else None

    def liquidation(self, market: Market, ts_ns: int) -> bytes:
        """One liquidation at the touch: `S` the side of the position (a long's is filled at the bid)."""
        long = bool(self.rng.random() < 0.5)
        price = market.best(BID) if long else market.best(ASK)
        qty = int(self.rng.integers(1, 10 ** (self.qty_dec + 1)))
        ms = ts_ns // 1_000_000
        return json.dumps({"topic": f"allLiquidation.{self.symbol}", "type": "snapshot", "ts": ms,
                           "data": [{"T": ms, "s": self.symbol, "S": "Buy" if long else "Sell",
                                     "v": wire(qty, self.qty_dec), "p": wire(price, self.px_dec)}]},
                          separators=(",", ":")).encode()

