"""OKX books on the Python side: every book is cut to the `books` channel's 400 levels."""
from __future__ import annotations

import numpy as np

from shm.segment import SegmentWriter

from ...feed import VenueFeed
from ...instruments import Instrument
from ...sync import SY_DEPTH
from ..base import PlanOptions
from . import decoder
from .protocol import BOOK_DEPTH, OkxProtocol


class OkxFeed(VenueFeed):
    """OKX `books`: the snapshot arrives on the socket; each update must chain (prevSeqId == the
    last seqId, when the message has them) and match its checksum (when non-zero). A gap or a
    mismatch invalidates that book only, which then waits for a fresh snapshot (resubscribe)."""

    PROTOCOL = OkxProtocol()
    PROTOCOL_ID = decoder.PROTOCOL_ID
    STEP = decoder.step
    CAPACITY = 1024  # books are 400 levels deep

    def __init__(self, instruments: list[Instrument], writer: SegmentWriter, capacity: int | None = None,
                 latency: np.ndarray | None = None, options: PlanOptions | None = None):
        super().__init__(instruments, writer, capacity, latency, options)
        self.sync[:, SY_DEPTH] = BOOK_DEPTH
