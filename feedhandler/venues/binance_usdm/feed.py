"""Binance futures books on the Python side: the spot feed's buffering and REST snapshots, with the
futures step (binance_usdm.decoder) and the venue's protocol data."""
from __future__ import annotations

from ..binance.feed import BinanceFeed
from . import decoder
from .protocol import USDM


class BinanceFuturesFeed(BinanceFeed):
    """Binance USD-M books (COIN-M: the same with its protocol data): diffs buffered until a REST
    snapshot; a snapshot older than the first buffered diff is fetched again; then the futures rule
    (the first applied diff straddles the snapshot's id, later ones chain on by pu)."""

    PROTOCOL = USDM
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step

    def _bridged(self, book: int) -> None:
        """The book stays BRIDGING until a diff straddles the snapshot's id (the step makes it LIVE)."""
