"""Binance futures books on the Python side: the spot feed's buffering and REST snapshots, with the
futures step (binance_usdm.decoder) and the venue's protocol data; and the polled open interest."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import numpy as np

from shm.layout import Counter

from ...feed_kernels import KIND_OPEN_INTEREST, publish_stats
from ..binance.feed import BinanceFeed
from . import decoder
from .protocol import USDM

_NO_VALUE = np.int64(0)


class BinanceFuturesFeed(BinanceFeed):
    """Binance USD-M books (COIN-M: the same with its protocol data): diffs buffered until a REST
    snapshot; a snapshot older than the first buffered diff is fetched again; then the futures rule
    (the first applied diff straddles the snapshot's id, later ones chain on by pu). The open interest
    the worker polls (`polls`, the protocol's poll_path) comes back through `on_rest`."""

    PROTOCOL = USDM
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step

    def _bridged(self, book: int) -> None:
        """The book stays BRIDGING until a diff straddles the snapshot's id (the step makes it LIVE)."""

    def on_rest(self, url: str, body: bytes, ts_recv: int) -> None:
        parsed = urlparse(url)
        if self.PROTOCOL.poll_path and parsed.path.endswith(self.PROTOCOL.poll_path):
            self.on_open_interest(parse_qs(parsed.query).get("symbol", [""])[0], body, ts_recv)
        else:
            super().on_rest(url, body, ts_recv)

    def on_open_interest(self, venue_symbol: str, body: bytes, ts_recv: int) -> None:
        """A polled open interest: an OPEN_INTEREST record at the time the venue stamped it, exact at the
        instrument's quantity decimals (contracts on COIN-M); a malformed answer is a decode error."""
        book = self._index.get(venue_symbol)
        if book is None:
            self._decode_error()
            return
        value, when_ms, err = decoder.decode_open_interest(body, len(body), self.instruments[book].qty_dec)
        if err:
            self.counters[book, Counter.DECODE_ERRORS] += 1
            return
        publish_stats(KIND_OPEN_INTEREST, np.int64(book), _NO_VALUE, np.int64(when_ms * 1_000_000),
                      np.int64(ts_recv), (np.int64(value), _NO_VALUE, _NO_VALUE, _NO_VALUE, _NO_VALUE), self._out)
