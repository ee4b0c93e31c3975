"""Binance spot books on the Python side: diffs buffered until a REST snapshot bridges them."""
from __future__ import annotations

from collections import deque
from urllib.parse import parse_qs, urlparse

import numpy as np

from shm.layout import Counter
from shm.segment import SegmentWriter

from ...feed import VenueFeed
from ...feed_kernels import NO_CHECKSUM, ROW_PRICE, ROW_QTY, ROW_SIDE, load_snapshot, settle
from ...instruments import Instrument
from ...publish import mark_decoded
from ...sync import BRIDGING, BUFFERING, CONNECTING, LIVE, RESYNC, SY_CONN, SY_STATE, SY_UPDATE_ID, Action
from ..base import PlanOptions
from . import decoder
from .protocol import SPOT, BinanceProtocol


class BinanceFeed(VenueFeed):
    """Binance spot books: diffs buffered until a REST snapshot bridges them (official procedure):
    a snapshot older than the first buffered diff is stale (fetch again), diffs it already holds
    are dropped, then every diff must continue the last (U == previous u + 1)."""

    PROTOCOL: BinanceProtocol = SPOT
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step
    WAITING = BUFFERING

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, options: PlanOptions | None = None, buffer_frames: int = 10_000):
        super().__init__(instruments, writer, capacity, latency, options)
        self.buffer_frames = buffer_frames
        self.buffered: list[deque] = [deque() for _ in instruments]  # (payload, ts_recv, conn, first id)
        self.stale_snapshots = 0

    def _act(self, action: Action, payload: bytes, ts_recv: int, conn: int) -> None:
        book = int(self._header[decoder.H_INSTRUMENT])
        if action == Action.GAP:
            self.buffered[book].clear()
        elif self.sync[book, SY_STATE] in (CONNECTING, RESYNC):
            self.sync[book, SY_STATE] = BUFFERING
        buffered = self.buffered[book]
        if len(buffered) >= self.buffer_frames:
            buffered.popleft()  # a snapshot must now be newer than what is left
        buffered.append((payload, ts_recv, conn, int(self._header[decoder.H_FIRST_ID])))

    def _wants_snapshot(self, book: int) -> bool:
        return int(self.sync[book, SY_STATE]) == BUFFERING and bool(self.buffered[book])

    def on_disconnect(self, conn: int, ts_recv: int) -> None:
        for book in np.flatnonzero(self.sync[:, SY_CONN] == conn):
            self.buffered[book].clear()  # diffs of a dead connection bridge nothing
        super().on_disconnect(conn, ts_recv)

    def on_rest(self, url: str, body: bytes, ts_recv: int) -> None:
        parsed = urlparse(url)
        if parsed.path.endswith(self.PROTOCOL.snapshot_path):
            self.on_snapshot(parse_qs(parsed.query).get("symbol", [""])[0], body, ts_recv)

    def on_snapshot(self, venue_symbol: str, body: bytes, ts_recv: int) -> None:
        """A REST depth snapshot for one book (asked for through `requests`)."""
        book = self._index.get(venue_symbol)
        if book is None:
            self._decode_error()
            return
        if self.sync[book, SY_STATE] in (LIVE, BRIDGING):
            return  # not asked for: the book is already bridged
        buffered = self.buffered[book]
        self._fit_scratch(len(body))
        inst = self.instruments[book]
        scratch = self._scratch
        last_id, _, total, err = decoder.decode_snapshot(body, len(body), inst.px_dec,
                                                         inst.qty_dec, scratch[ROW_SIDE], scratch[ROW_PRICE],
                                                         scratch[ROW_QTY])
        if err != 0:
            self.counters[book, Counter.DECODE_ERRORS] += 1
            return
        if buffered and last_id < buffered[0][3]:
            self.stale_snapshots += 1  # older than the buffer: fetch again
            self.sync[book, SY_STATE] = BUFFERING
            return
        load_snapshot(book, 0, total, scratch, self._books, self._out)
        mark_decoded(self.latency, ts_recv, False)  # the snapshot's publish hop starts here
        self.sync[book, SY_UPDATE_ID] = last_id
        if not settle(book, True, NO_CHECKSUM, 0, ts_recv, scratch, self.sync, self._books, self._out):
            return
        self.sync[book, SY_STATE] = BRIDGING
        frames = list(buffered)
        buffered.clear()
        for payload, frame_ts, conn, _ in frames:
            action = self._step(payload, frame_ts, conn, False, self._feed, self._books, self._out)
            if action:
                self._act(Action(action), payload, frame_ts, conn)
        self._bridged(book)

    def _bridged(self, book: int) -> None:
        """After the buffered diffs: a snapshot the buffer continues is live (newer diffs must chain on)."""
        if self.sync[book, SY_STATE] == BRIDGING:
            self.sync[book, SY_STATE] = LIVE
