"""Bybit books on the Python side: snapshots come on the socket, a resync is a resubscription."""
from __future__ import annotations

from ...feed import VenueFeed
from . import decoder
from .protocol import BybitProtocol


class BybitFeed(VenueFeed):
    """Bybit `orderbook.{depth}`: each snapshot (or `u == 1`) replaces the book and sets its depth
    from the topic; each delta must carry the next `u`. A gap invalidates that book only, which
    then waits for a fresh snapshot (unsubscribe and subscribe its topic). The event table keeps
    each instrument's last BBO (`orderbook.1` deltas carry only the sides that changed)."""

    PROTOCOL = BybitProtocol()
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step
    CAPACITY = 2048  # books are at most 1,000 levels deep

    @classmethod
    def event_shape(cls, instruments: int) -> tuple[int, int]:
        return (max(1, instruments), decoder.EVENT_WORDS)
