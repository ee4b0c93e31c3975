"""The rings as a sink reads them: a cursor per ring that advances while a batch is built; the
position after it is committed (and saved) only once the service acknowledged that batch, which is
where a restarted sink resumes (records the ring no longer holds become one explicit gap record).

Book changes are conflated within a batch into one top-N snapshot per book, read from the book
block when the batch closes; trades, statuses, NBBO changes and a derivatives venue's bbo, funding,
open interest and liquidation records are delivered one for one. A book its writer left torn
(killed inside a publish) cannot be read: its changes become a gap record. Trades take
the NBBO from the NBBO ring's reader of the moment the batch closes (the aggregator may have been
replaced while the batch was read), so no batch holds a reader that was closed under it.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from shm.layout import (SLOT_INSTRUMENT, SLOT_KIND, SLOT_SEQ, SLOT_TS_PUBLISH, SLOT_WORDS, STATS_KINDS, Header, Kind,
                        State)
from shm.nbbo_reader import NbboEvent, NbboReader, VenueStatusEvent
from shm.reader import BookSnapshot, GapEvent, StatusEvent, VenueReader
from shm.ring import poll, write_position
from shm.segment import SegmentError

from . import records

REATTACH_EVERY_S = 1.0
BOOK_READ_WAIT_S = 1.0  # how long a live writer may stay inside one publish before its book is given up
KIND_TRADE = int(Kind.TRADE)
KIND_BOOK = int(Kind.BOOK)
MARKET_KINDS = np.array(STATS_KINDS, np.int64)


@dataclass(frozen=True)
class Position:
    """Where a sink resumes in one ring: the writer (`epoch`, its start time) and the next position;
    `lineage` and `base` (Header.LINEAGE_NS / LINEAGE_BASE of that writer, 0: unknown) let a sink
    that finds a later writer count exactly what it missed."""

    epoch: int
    next: int
    lineage: int = 0
    base: int = 0

    def to_json(self) -> list[int]:
        return [self.epoch, self.next, self.lineage, self.base]

    @classmethod
    def from_json(cls, value) -> Position:
        """From `to_json`'s list (or the two-word [epoch, next] saved before lineages)."""
        return cls(*(int(word) for word in value))

    def missed_before(self, lineage: int, base: int) -> int:
        """Records published after this position and before the first record of a later writer of
        lineage `lineage` whose base is `base`; -1 when that cannot be known (another lineage)."""
        if not self.lineage or lineage != self.lineage or base < self.base + self.next:
            return -1
        return base - (self.base + self.next)


class Batch:
    """Records read for one delivery, books conflated; bounded by the caller's budget. Trades stay ring
    rows (`trade_rows`: (source, int64 rows) chunks) that become columns with numpy when the batch
    closes (while their ring is attached; a retried batch carries identical values). `nbbo` is the NBBO
    ring's source, whose reader at close gives the trades their NBBO."""

    def __init__(self, depth: int, nbbo: RingSource | None):
        self.depth = depth
        self.nbbo = nbbo
        self.records: list[dict] = []
        self.trade_rows: list[tuple[RingSource, np.ndarray]] = []
        self.read = 0  # ring records consumed
        self.conflated = 0  # book changes merged into a snapshot with others
        self.missed = 0  # records lost to gaps
        self._books: dict[tuple[int, int], list] = {}  # (source id, book) -> [source, book, last seq, changes]
        self.trades: records.TradeColumns | None = None  # once the batch is closed

    def books_changed(self, source: RingSource, rows: np.ndarray) -> None:
        """Book-change rows (in ring order) noted per book: its last position and how many changes;
        the snapshot is read when the batch closes."""
        instruments = rows[:, SLOT_INSTRUMENT]
        books, last_reversed, counts = np.unique(instruments[::-1], return_index=True, return_counts=True)
        for index, at, count in zip(books.tolist(), (len(rows) - 1 - last_reversed).tolist(), counts.tolist()):
            seq = int(rows[at, SLOT_SEQ]) - 1
            entry = self._books.get((id(source), index))
            if entry is None:
                self._books[(id(source), index)] = [source, index, seq, count]
                self.conflated += count - 1
            else:
                entry[2] = seq
                entry[3] += count
                self.conflated += count

    def close(self) -> list[dict]:
        """The records to deliver: everything read, then one snapshot per changed book; the trades
        as columns."""
        if self.trade_rows:
            self.trades = records.trade_columns(self.trade_rows, self.nbbo.reader if self.nbbo is not None else None)
        for source, index, seq, changes in self._books.values():
            book = source.book(index, self.depth)
            if book is None:
                self.records.append(records.gap_record(source.ring, source.epoch, seq + 1, changes, "book_unreadable",
                                                       time.time_ns()))
                self.missed += changes
            else:
                self.records.append(records.book_record(source.ring, source.epoch, seq, changes, book, periodic=False))
        self._books.clear()
        return self.records

    @property
    def size(self) -> int:
        """Records to deliver: dicts and trade rows."""
        return len(self.records) + sum(len(rows) for _, rows in self.trade_rows)

    def publish_stamps(self) -> np.ndarray:
        """ts_publish of every change-driven record (periodic snapshots and gaps excluded)."""
        stamps = [np.fromiter((r["ts_publish"] for r in self.records if r.get("ts_publish") and not r.get("periodic")),
                              np.int64)]
        stamps += [rows[:, SLOT_TS_PUBLISH] for _, rows in self.trade_rows]
        return np.concatenate(stamps)


class RingSource:
    """One ring (a venue's, or `nbbo`) followed from an acknowledged position."""

    def __init__(self, prefix: str, ring: str, directory: str | None = None, rows: int = 1024,
                 stored_after: Callable[[str, Position], int | None] | None = None):
        self.prefix, self.ring, self.directory = prefix, ring, directory
        self._stored_after = stored_after  # the sink's Sink.stored_after
        self.reader: VenueReader | None = None
        self.epoch = self.lineage = self.base = 0
        self.acked: Position | None = None  # None: never attached and nothing saved
        self._cursor = np.zeros(2, np.int64)
        self._rows = np.zeros((rows, SLOT_WORDS), np.int64)
        self._next_attach = 0.0
        self._pending_gap: dict | None = None

    @property
    def attached(self) -> bool:
        return self.reader is not None

    def resume_from(self, saved: Position | None) -> None:
        self.acked = saved

    def lag(self) -> int:
        if self.reader is None:
            return 0
        return int(write_position(self.reader.ring_control)) - int(self._cursor[0])

    def position(self) -> Position | None:
        """The position after everything read so far (what a successful delivery acknowledges)."""
        if self.reader is None:
            return self.acked
        return Position(self.epoch, int(self._cursor[0]), self.lineage, self.base)

    def commit(self, position: Position | None) -> None:
        """`position` was acknowledged. One of an earlier writer (a batch still in flight when this
        source moved to the writer's successor) is older than what is acknowledged now: ignored."""
        if position is not None and (self.acked is None or position.epoch == self.epoch):
            self.acked = position

    def read(self, batch: Batch, budget: int) -> int:
        """Append up to `budget` ring records to `batch`; returns how many were read."""
        if self.reader is None or self._ended():
            self._try_attach(batch)
            if self.reader is None:
                return 0
        if self._pending_gap is not None:
            batch.records.append(self._pending_gap)
            batch.missed += max(self._pending_gap["missed"], 0)
            self._pending_gap = None
        read = 0
        while read < budget:
            rows = self._rows[:min(budget - read, len(self._rows))]
            filled = poll(self.reader.ring, self.reader.ring_control, self._cursor, rows)
            polled = rows[:filled]
            books = polled[:, SLOT_KIND] == KIND_BOOK
            if books.any():
                batch.books_changed(self, polled[books])
                polled = polled[~books]
            trades = polled[:, SLOT_KIND] == KIND_TRADE
            if trades.any():
                batch.trade_rows.append((self, polled[trades].copy()))
                polled = polled[~trades]
            markets = np.isin(polled[:, SLOT_KIND], MARKET_KINDS)
            if markets.any():
                batch.records += records.market_records(self.ring, self.epoch, self.reader.instruments, polled[markets])
                polled = polled[~markets]
            for row in polled:
                self._add(batch, row)
            read += filled
            if filled < len(rows):
                break
        batch.read += read
        return read

    def _ended(self) -> bool:
        """The writer was replaced or shut down, everything it wrote was read and delivered: time to
        look for its successor."""
        state = self.reader.segment.state
        if state not in (State.REPLACED, State.CLOSED):
            return False
        drained = int(write_position(self.reader.ring_control)) == int(self._cursor[0])
        return drained and self.acked == self.position() and time.monotonic() >= self._next_attach

    def _try_attach(self, batch: Batch) -> None:
        if time.monotonic() < self._next_attach:
            return
        self._next_attach = time.monotonic() + REATTACH_EVERY_S
        try:
            reader = NbboReader(self.prefix, self.directory) if self.ring == "nbbo" else \
                VenueReader(self.ring, self.prefix, self.directory)
        except SegmentError:
            return
        epoch = int(reader.segment.header[Header.START_NS])
        if self.reader is not None and epoch == self.epoch:  # the same writer, closed: nothing new comes
            reader.close()
            return
        saved = self.acked
        if self.reader is None and saved is not None and saved.epoch != epoch and self._stored_after is not None:
            # Resumed from saved positions and the writer is gone: what the service holds of it is not missed.
            stored = self._stored_after(self.ring, saved)
            if stored is None:
                reader.close()
                return
            saved = replace(saved, next=max(saved.next, stored))
        drained_old = self.reader is not None
        if self.reader is not None:
            self.reader.close()
        header = reader.segment.header
        self.reader, self.epoch = reader, epoch
        self.lineage, self.base = int(header[Header.LINEAGE_NS]), int(header[Header.LINEAGE_BASE])
        head = int(write_position(reader.ring_control))
        oldest = max(0, head - reader.segment.geometry.ring_slots)
        if saved is not None and saved.epoch == epoch:
            self._cursor[0] = saved.next  # a lap since is reported by the ring read itself
            self.acked = Position(epoch, saved.next, self.lineage, self.base)
            return
        self._cursor[0] = oldest
        if saved is not None:
            # A later writer: what the writers in between published and this ring no longer holds,
            # counted from the lineage; without one (a reboot, positions saved before lineages), only
            # a predecessor read to its end tells the count.
            before = saved.missed_before(self.lineage, self.base)
            missed = before + oldest if before >= 0 else oldest if drained_old else -1
            if missed:
                self._pending_gap = records.gap_record(self.ring, epoch, oldest, missed, "writer_restarted",
                                                       time.time_ns())
        self.acked = Position(epoch, oldest, self.lineage, self.base)

    def _add(self, batch: Batch, row: np.ndarray) -> None:
        reader = self.reader
        event = reader._event(row)
        if isinstance(event, NbboEvent):
            batch.records.append(records.nbbo_record(self.epoch, event))
        elif isinstance(event, VenueStatusEvent):
            batch.records.append(records.venue_status_record(self.epoch, event))
        elif isinstance(event, StatusEvent):
            batch.records.append(records.status_record(self.ring, self.epoch, event))
        elif isinstance(event, GapEvent):
            batch.records.append(records.gap_record(self.ring, self.epoch, event.position, event.missed, "lapped",
                                                    time.time_ns()))
            batch.missed += event.missed

    def snapshots(self, batch: Batch) -> None:
        """A periodic snapshot of every valid book of this venue (NBBO rings have none)."""
        if self.reader is None or self.ring == "nbbo":
            return
        seq = int(self._cursor[0]) - 1
        for instrument in self.reader.instruments:
            book = self.book(instrument.index, batch.depth)
            if book is not None and book.valid:
                batch.records.append(records.book_record(self.ring, self.epoch, seq, 0, book, periodic=True))

    def book(self, index: int, depth: int) -> BookSnapshot | None:
        """Book `index` as it is now; None when its block cannot be read consistently: its writer died
        inside a publish (or has been stuck in one for BOOK_READ_WAIT_S)."""
        reader = self.reader
        deadline = time.monotonic() + BOOK_READ_WAIT_S
        while True:
            try:
                return reader.book(index, depth)
            except SegmentError:
                if not reader.segment.writer_alive(reader.stale_after_s) or time.monotonic() >= deadline:
                    return None
                time.sleep(0.001)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

