"""The venue steps by venue id, and the loop that runs a batch of captured frames through one in a
single numba call: replay touches Python only for the frames that need it (REST responses,
connects, snapshots, diffs to buffer), which is what lets it run at the decoders' speed."""
from __future__ import annotations

from numba import njit

from .capture import FrameKind
from .sync import Action
from .venues import binance, coinbase, kraken

BINANCE = 0
KRAKEN = 1
COINBASE = 2
VENUE_IDS = {"binance": BINANCE, "kraken": KRAKEN, "coinbase": COINBASE}
STEPS = {BINANCE: binance.step, KRAKEN: kraken.step, COINBASE: coinbase.step}

_WS_RECV = int(FrameKind.WS_RECV)
_WS_SENT = int(FrameKind.WS_SENT)
_DONE = int(Action.DONE)
_OTHER = int(Action.OTHER)


@njit(nogil=True, cache=True, _nrt=False)
def run_frames(venue, data, starts, stops, kinds, ts, conns, first, end, symbols, tables, scratch, header, events,
               sync, conn_state, levels, ladder, meta, blocks, ring, control, counters, latency):
    """Step frames [first, end) of a batch until one needs Python; returns (its index, its Action),
    or (end, DONE). Frames the client sent are skipped; other non-received frames return OTHER."""
    for k in range(first, end):
        if kinds[k] == _WS_SENT:
            continue
        if kinds[k] != _WS_RECV:
            return k, _OTHER
        frame = data[starts[k]:stops[k]]
        if venue == BINANCE:
            action = binance.step(frame, ts[k], conns[k], True, symbols, tables, scratch, header, events, sync,
                                  conn_state, levels, ladder, meta, blocks, ring, control, counters, latency)
        elif venue == KRAKEN:
            action = kraken.step(frame, ts[k], conns[k], True, symbols, tables, scratch, header, events, sync,
                                 conn_state, levels, ladder, meta, blocks, ring, control, counters, latency)
        else:
            action = coinbase.step(frame, ts[k], conns[k], True, symbols, tables, scratch, header, events, sync,
                                   conn_state, levels, ladder, meta, blocks, ring, control, counters, latency)
        if action != _DONE:
            return k, action
    return end, _DONE
