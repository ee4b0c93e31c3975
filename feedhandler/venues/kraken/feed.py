"""Kraken books on the Python side: the subscribed depth, from the configuration or the v2 ack."""
from __future__ import annotations

import json

import numpy as np

from shm.segment import SegmentWriter

from ...feed import VenueFeed
from ...instruments import Instrument
from ...sync import SY_DEPTH, Action
from ..base import PlanOptions
from . import decoder
from .protocol import KrakenProtocol


class KrakenFeed(VenueFeed):
    """Kraken books, v1 or v2 frames: a snapshot arrives on the socket; every update is applied,
    the book truncated to the subscribed depth, and the CRC32 of the top 10 checked (v2 checks
    the snapshot too). A mismatch invalidates that book only, which then waits for a fresh snapshot
    (resubscribe). v2 messages do not carry the depth: it comes from the subscription ack."""

    PROTOCOL = KrakenProtocol()
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step
    CAPACITY = 2048  # Kraken books are at most 1,000 levels deep

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, options: PlanOptions | None = None):
        super().__init__(instruments, writer, capacity, latency, options)
        self.sync[:, SY_DEPTH] = self.options.book_depth

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        if action == Action.ACK:
            self._subscription_ack(payload)

    def _subscription_ack(self, payload: bytes) -> None:
        """v2: `{"method":"subscribe","result":{"channel":"book","depth":N,"symbol":S},...}` sets S's depth."""
        try:
            result = json.loads(payload).get("result", {})
        except (ValueError, AttributeError):
            self._decode_error()
            return
        if not isinstance(result, dict):
            return
        book = self._index.get(result.get("symbol"))
        if result.get("channel") == "book" and book is not None and isinstance(result.get("depth"), int):
            self.sync[book, SY_DEPTH] = result["depth"]
