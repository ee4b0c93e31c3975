"""Readers of the segments under one prefix for tools that poll them (fh top, fh metrics): attached on
first use, and again once a new writer replaced the segment. A file under the prefix that fails
validation (another user's, a symlink, a corrupt header or symbol table) is skipped and reported:
kept in `Refusals` for the tool to show, and logged once, never raised into a scrape. A tool that
finds nothing under its prefix says so with `nothing_under`, naming the prefixes there are."""
from __future__ import annotations

import glob
import logging
import os

from shm.latency import NAME_PREFIX as LATENCY_FILES
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.inventory import LOCK_NAME as LOCK_FILES, describe_prefixes, shm_dir
from shm.segment import SegmentError, segment_path


def venue_names(prefix: str) -> list[str]:
    """The venue segments under `prefix` (not the NBBO's, nor the processes' latency and lock files)."""
    paths = glob.glob(os.path.join(shm_dir(), f"{glob.escape(prefix)}.*"))
    names = [os.path.basename(path)[len(prefix) + 1:] for path in paths]
    return sorted(n for n in names if n != "nbbo" and not n.startswith((LATENCY_FILES, LOCK_FILES)))


def nothing_under(prefix: str, what: str = "nothing", names: str = "*") -> str:
    """The line a tool shows when it found `what` under `<shm dir>/<prefix>.<names>`: with the prefixes
    that do hold segments or latency files (shm.inventory), or how to start a pipeline when none does."""
    there = describe_prefixes()
    hint = (f"prefixes there: {there}; choose one with --prefix P" if there else
            "no prefix holds segments or latency files: is fh running? (make run, or fh run -c CONFIG)")
    return f"{what} under {os.path.join(shm_dir(), f'{prefix}.{names}')}; {hint}"


class Refusals:
    """The files refused as of the last look at each (path: why); each refusal logged when first seen."""

    def __init__(self, log: logging.Logger | None = None):
        self.now: dict[str, str] = {}
        self.log = log or logging.getLogger("fh.refused")

    def refuse(self, path: str, why: str) -> None:
        if self.now.get(path) != why:
            self.log.warning("skipping %s: %s", path, why)
        self.now[path] = why

    def accept(self, path: str) -> None:
        self.now.pop(path, None)

    def replace(self, refused: dict[str, str]) -> None:
        """What one complete look refused: everything else is no longer refused."""
        for path in set(self.now) - set(refused):
            self.accept(path)
        for path, why in refused.items():
            self.refuse(path, why)


class AttachedReaders:
    """Readers by segment name under one prefix; a replaced segment is attached again."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._readers: dict[str, VenueReader] = {}
        self.refusals = Refusals()

    def get(self, name: str) -> VenueReader | None:
        """The reader of segment `name` (`nbbo`: an NbboReader); None while there is none."""
        reader = self._readers.get(name)
        if reader is not None and reader.replaced:
            reader.close()
            reader = None
        if reader is None:
            path = segment_path(self.prefix, name)
            try:
                reader = NbboReader(self.prefix) if name == "nbbo" else VenueReader(name, prefix=self.prefix)
            except SegmentError as exc:
                if os.path.lexists(path):  # there, but not a segment we may trust and read
                    self.refusals.refuse(path, str(exc))
                else:
                    self.refusals.accept(path)
                return None
            self.refusals.accept(path)
            self._readers[name] = reader
        return reader

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
