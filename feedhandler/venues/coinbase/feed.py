"""Coinbase books on the Python side: everything happens in the step (snapshots come on the socket)."""
from __future__ import annotations

from ...feed import VenueFeed
from . import decoder
from .protocol import CoinbaseProtocol


class CoinbaseFeed(VenueFeed):
    """Coinbase books from either API. Advanced Trade: the l2_data snapshot event makes a book valid,
    updates follow, and every message's sequence_num must follow the last one of its connection; a
    jump invalidates every book that connection carries (they resubscribe). Exchange level2: a
    snapshot, then l2update changes (no sequence on that channel)."""

    PROTOCOL = CoinbaseProtocol()
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step
    EVENT_SHAPE = (decoder.MAX_EVENTS, decoder.EVENT_WORDS)
    CAPACITY = 65536  # full-depth snapshots: BTC-USD had 27k offers in 2026
