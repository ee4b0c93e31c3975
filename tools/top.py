"""`fh top`: a live terminal view of a running pipeline, read-only from shared memory: the NBBO per
symbol (who is at each side, locked/crossed, each venue's age) and per venue its state, book
validity, message rate, gaps, resyncs and receive-to-publish latency percentiles."""
from __future__ import annotations

import time

import numpy as np

from shm.nbbo_reader import NbboReader
from shm.reader import EventCursor, VenueReader
from shm.segment import SegmentError, segment_path

from .attached import AttachedReaders, venue_names


class Top:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.readers = AttachedReaders(prefix)
        self.cursors: dict[str, tuple[VenueReader, EventCursor]] = {}
        self.frames: dict[str, tuple[float, int]] = {}
        self.latency: dict[str, list[int]] = {}

    def _reader(self, venue: str) -> VenueReader | None:
        """The venue's reader, with an event cursor from where it (re)attached."""
        reader = self.readers.get(venue)
        if reader is not None and self.cursors.get(venue, (None,))[0] is not reader:
            self.cursors[venue] = (reader, reader.events())
        return reader

    def venue_rows(self) -> list[list[str]]:
        rows = []
        now = time.monotonic()
        for venue in venue_names(self.prefix):
            reader = self._reader(venue)
            if reader is None:
                if segment_path(self.prefix, venue) in self.readers.refusals.now:
                    rows.append([venue, "REFUSED"] + ["-"] * 9)  # the log says why
                continue
            latencies = self.latency.setdefault(venue, [])
            for event in self.cursors[venue][1].poll():
                if getattr(event, "ts_recv", 0) and hasattr(event, "bid_px"):
                    latencies.append(event.ts_publish - event.ts_recv)
            del latencies[:-5000]
            totals = reader.totals()
            frames = totals["frames"]
            last_t, last_frames = self.frames.get(venue, (now, frames))
            rate = (frames - last_frames) / (now - last_t) if now > last_t else 0.0
            self.frames[venue] = (now, frames)
            valid = sum(reader.book(i.index, depth=1).valid for i in reader.instruments)
            p50, p99 = (np.percentile(latencies, [50, 99]) / 1e3) if latencies else (float("nan"),) * 2
            status = reader.status()
            rows.append([venue, status["state"] if status["writer_alive"] else "DOWN",
                         f"{status['heartbeat_age_s']:.1f}s", f"{valid}/{len(reader.instruments)}", f"{rate:,.0f}",
                         str(frames), str(totals["gaps"]), str(totals["resyncs"]), str(totals["decode_errors"]),
                         f"{p50:.1f}", f"{p99:.1f}"])
        return rows

    def nbbo_rows(self) -> list[list[str]]:
        try:
            nbbo = NbboReader(prefix=self.prefix)
        except SegmentError:
            return []
        rows = []
        with nbbo:
            for inst in nbbo.instruments:
                q = nbbo.quote(inst.index)
                ages = " ".join(f"{v.venue}:{v.age_ns / 1e6:.0f}ms" if v.included else f"{v.venue}:{v.reason.name.lower()}"
                                for v in q.venues if v.age_ns >= 0 or v.reason.value)
                rows.append([inst.symbol, inst.qty_text(q.bid_qty), inst.price_text(q.bid_px), "+".join(q.bid_venues),
                             inst.price_text(q.ask_px), inst.qty_text(q.ask_qty), "+".join(q.ask_venues),
                             "LOCKED" if q.locked else "CROSSED" if q.crossed else "", ages])
        return rows

    def render(self):
        from rich.console import Group
        from rich.table import Table

        nbbo = Table(title=f"NBBO ({self.prefix}.nbbo)", expand=True)
        for column in ("symbol", "bid size", "bid", "bid venues", "ask", "ask size", "ask venues", "flags", "venues"):
            nbbo.add_column(column)
        for row in self.nbbo_rows():
            nbbo.add_row(*row)
        venues = Table(title="venues", expand=True)
        for column in ("venue", "state", "heartbeat", "valid books", "msgs/s", "frames", "gaps", "resyncs",
                       "decode errors", "recv->pub p50 us", "p99 us"):
            venues.add_column(column)
        for row in self.venue_rows():
            venues.add_row(*row)
        return Group(nbbo, venues)


def run(prefix: str, interval_s: float, once: bool = False) -> int:
    from rich.console import Console
    from rich.live import Live

    top = Top(prefix)
    if once:
        top.venue_rows()
        time.sleep(min(interval_s, 1.0))
        Console().print(top.render())
        return 0
    with Live(top.render(), refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(interval_s)
                live.update(top.render())
        except KeyboardInterrupt:
            pass
    return 0
