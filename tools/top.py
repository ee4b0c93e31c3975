"""`fh top`: a live terminal view of a running pipeline, read-only from shared memory: the NBBO per
symbol (who is at each side, locked/crossed, each venue's age) and per venue its state, book
validity, message rate, gaps, resyncs and receive-to-publish latency percentiles.

Layout: two borderless tables, one space between columns, made to fit an 80-column terminal. Symbols
and numbers are never cut: the venue lists wrap between names instead, and columns that a narrow
terminal has no room for (each venue's quote age per symbol, the frame totals) appear once the
terminal is wide enough for them. A locked or crossed NBBO gets a line under the table saying which
venues' prices disagree: a cross-venue cross is shown, never hidden. `q` quits, as does Ctrl-C.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from dataclasses import dataclass

import numpy as np

from shm.nbbo_reader import NbboReader
from shm.reader import EventCursor, VenueReader
from shm.segment import SegmentError, segment_path

from .attached import AttachedReaders, nothing_under, venue_names

QUIT_KEYS = frozenset("qQ")


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    from_width: int = 0  # shown on terminals at least this wide
    whole: bool = True  # never wrapped (names and numbers); False: wraps between words


NBBO_COLUMNS = (Column("symbol"), Column("bid venues", "right", whole=False), Column("bid size", "right"),
                Column("bid", "right"), Column("ask"), Column("ask size"), Column("ask venues", whole=False),
                Column("flags"), Column("venue ages", from_width=120, whole=False))
VENUE_COLUMNS = (Column("venue"), Column("state"), Column("heartbeat", "right"), Column("books", "right"),
                 Column("msgs/s", "right"), Column("frames", "right", from_width=100), Column("gaps", "right"),
                 Column("resyncs", "right"), Column("errors", "right"), Column("p50 µs", "right"),
                 Column("p99 µs", "right"))


def size_text(text: str) -> str:
    """An exact decimal without its trailing zeros (`0.50000000` -> `0.5`)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


class Top:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.readers = AttachedReaders(prefix)
        self.cursors: dict[str, tuple[VenueReader, EventCursor]] = {}
        self.frames: dict[str, tuple[float, int]] = {}
        self.latency: dict[str, list[int]] = {}
        self.notes: list[str] = []  # what the last nbbo_rows() found locked or crossed, explained

    def has_segments(self) -> bool:
        """Whether anything under the prefix is there to show (venue segments or the NBBO's)."""
        return bool(venue_names(self.prefix)) or os.path.lexists(segment_path(self.prefix, "nbbo"))

    def _reader(self, venue: str) -> VenueReader | None:
        """The venue's reader, with an event cursor from where it (re)attached."""
        reader = self.readers.get(venue)
        if reader is not None and self.cursors.get(venue, (None,))[0] is not reader:
            self.cursors[venue] = (reader, reader.events())
        return reader

    def venue_rows(self) -> list[list[str]]:
        """One row per venue segment, in VENUE_COLUMNS order."""
        rows = []
        now = time.monotonic()
        for venue in venue_names(self.prefix):
            reader = self._reader(venue)
            if reader is None:
                if segment_path(self.prefix, venue) in self.readers.refusals.now:
                    rows.append([venue, "REFUSED"] + ["-"] * (len(VENUE_COLUMNS) - 2))  # the log says why
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
        """One row per symbol, in NBBO_COLUMNS order; `notes` explains each locked or crossed one."""
        self.notes = []
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
                flag = "LOCKED" if q.locked else "CROSSED" if q.crossed else "" if q.valid else "invalid"
                bid, ask = inst.price_text(q.bid_px), inst.price_text(q.ask_px)
                if q.locked or q.crossed:
                    self.notes.append(f"{inst.symbol} {flag}: bid {bid} on {' '.join(q.bid_venues)} "
                                      f"{'=' if q.locked else '>'} ask {ask} on {' '.join(q.ask_venues)}: "
                                      f"these venues' prices disagree (shown as they are)")
                rows.append([inst.symbol, " ".join(q.bid_venues), size_text(inst.qty_text(q.bid_qty)), bid, ask,
                             size_text(inst.qty_text(q.ask_qty)), " ".join(q.ask_venues), flag, ages])
        return rows

    def render(self, width: int):
        """Both tables, read now, for a terminal `width` columns wide."""
        nbbo = self.nbbo_rows()
        return frame(self.prefix, nbbo, self.notes, self.venue_rows(), width)

    def close(self) -> None:
        self.readers.close()


def frame(prefix: str, nbbo: list[list[str]], notes: list[str], venues: list[list[str]], width: int):
    """The NBBO table, the notes on its locked or crossed symbols, the venue table: `width` wide."""
    from rich.console import Group
    from rich.text import Text

    return Group(_table(f"NBBO ({prefix}.nbbo)", NBBO_COLUMNS, nbbo, width), *map(Text, notes),
                 _table("venues (errors: decode errors; p50/p99: receive -> publish)", VENUE_COLUMNS, venues, width))


def _table(title: str, columns: tuple[Column, ...], rows: list[list[str]], width: int):
    """`rows` under the `columns` a terminal `width` wide has room for. Each column is as wide as its
    longest cell (the longest name, where a column wraps between names); only rows too long for the
    terminal even so are folded, never cut."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = [columns[k] for k in range(len(columns)) if width >= columns[k].from_width]
    cells = [[row[k] for k in range(len(columns)) if width >= columns[k].from_width] for row in rows]
    least = [_narrowest(column, [row[k] for row in cells]) for k, column in enumerate(shown)]
    fits = sum(least) + len(shown) - 1 <= width
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=0)
    for column, narrowest in zip(shown, least):
        table.add_column(column.header, justify=column.justify, overflow="fold", no_wrap=column.whole and fits,
                         min_width=narrowest if fits else None)
    for row in cells:
        table.add_row(*map(Text, row))  # Text: a name holding [brackets] is not markup
    return table


def _narrowest(column: Column, cells: list[str]) -> int:
    """The least width that shows every cell of the column whole: its longest cell or, where the column
    wraps between words (headers always do), its longest word."""
    words = column.header.split() + (cells if column.whole else [word for cell in cells for word in cell.split()])
    return max(map(len, words))


class Keys:
    """Key presses on a terminal stdin, one at a time (cbreak mode: no Enter needed; Ctrl-C still
    interrupts), the terminal's mode restored on exit. Stdin that is not a terminal gives no keys."""

    def __init__(self):
        self.fd = sys.stdin.fileno()
        self.saved = None

    def __enter__(self) -> Keys:
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait(self, timeout_s: float) -> str:
        """The keys pressed within `timeout_s` ('' when none): returns at the first."""
        if self.saved is None:
            time.sleep(timeout_s)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        return os.read(self.fd, 64).decode(errors="replace") if ready else ""


def nothing_there(prefix: str) -> str:
    """The one-line reason `fh top` has nothing to show under `prefix`, naming the prefixes there are."""
    return f"fh top: {nothing_under(prefix)}"


def run(prefix: str, interval_s: float, once: bool = False) -> int:
    """Redraw every `interval_s` until `q` or Ctrl-C (`once`: print one frame); 1 when nothing is
    under the prefix."""
    from rich.console import Console
    from rich.live import Live

    top = Top(prefix)
    if not top.has_segments():
        print(nothing_there(prefix), file=sys.stderr)
        return 1
    console = Console()
    try:
        if once:
            top.venue_rows()  # the first look starts the rates and latencies the frame shows
            time.sleep(min(interval_s, 1.0))
            console.print(top.render(console.size.width))
            return 0
        with Keys() as keys, Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(top.render(console.size.width), refresh=True)
                if QUIT_KEYS & set(keys.wait(interval_s)):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        top.close()
