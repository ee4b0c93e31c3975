"""The loop that runs a batch of captured frames through a venue's step in a single numba call:
replay touches Python only for the frames that need it (REST responses, connects, snapshots, diffs
to buffer), which is what lets it run at the decoders' speed. numba caches no function that takes
another as an argument, so the venue's step is chosen here by its decoder's PROTOCOL_ID. The steps
are called with the types a live worker's per-frame call gives them (a bytes frame, `fresh` a bool,
not the literal True: numba compiles a callee once per literal argument), so that each step and
everything under it compiles once for both paths."""
from __future__ import annotations

import numpy as np
from numba import njit

from ..capture import FrameKind
from ..sync import Action
from .binance import decoder as binance
from .binance_usdm import decoder as binance_futures
from .bybit import decoder as bybit
from .coinbase import decoder as coinbase
from .kraken import decoder as kraken
from .okx import decoder as okx

_WS_RECV = int(FrameKind.WS_RECV)
_WS_SENT = int(FrameKind.WS_SENT)
_DONE = int(Action.DONE)
_OTHER = int(Action.OTHER)


@njit(nogil=True, cache=True, _nrt=False)
def run_frames(protocol, frames, first, end, feed, books, out):
    """Step frames [first, end) of a batch (capture.Frames) until one needs Python; returns (its index, its
    Action), or (end, DONE). Frames the client sent are skipped; other non-received frames return
    OTHER. `feed`, `books`, `out`: the step's argument groups (feed_kernels)."""
    data, starts, stops, kinds, ts, conns = frames
    fresh = np.bool_(True)
    for k in range(first, end):
        if kinds[k] == _WS_SENT:
            continue
        if kinds[k] != _WS_RECV:
            return k, _OTHER
        frame = data[starts[k]:stops[k]]
        if protocol == binance.PROTOCOL_ID:
            action = binance.step(frame, ts[k], conns[k], fresh, feed, books, out)
        elif protocol == binance_futures.PROTOCOL_ID:
            action = binance_futures.step(frame, ts[k], conns[k], fresh, feed, books, out)
        elif protocol == kraken.PROTOCOL_ID:
            action = kraken.step(frame, ts[k], conns[k], fresh, feed, books, out)
        elif protocol == okx.PROTOCOL_ID:
            action = okx.step(frame, ts[k], conns[k], fresh, feed, books, out)
        elif protocol == bybit.PROTOCOL_ID:
            action = bybit.step(frame, ts[k], conns[k], fresh, feed, books, out)
        else:
            action = coinbase.step(frame, ts[k], conns[k], fresh, feed, books, out)
        if action != _DONE:
            return k, action
    return end, _DONE
