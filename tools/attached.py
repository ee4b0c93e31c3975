"""Readers of the segments under one prefix for tools that poll them (fh top, fh metrics): attached on
first use, and again once a new writer replaced the segment. A file under the prefix that fails
validation (another user's, a symlink, a corrupt header or symbol table) is skipped and reported:
kept in `Refusals` for the tool to show, and logged once, never raised into a scrape. And which
prefixes hold segments at all, for a tool that found nothing under its own."""
from __future__ import annotations

import glob
import logging
import os

from shm.latency import NAME_PREFIX as LATENCY_FILES
from shm.layout import HEADER_BYTES, HEADER_NAME_AT, MAGIC
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.segment import DEFAULT_DIR, SegmentError, open_trusted, segment_path
from workers.process import LOCK_NAME as LOCK_FILES


def venue_names(prefix: str) -> list[str]:
    """The venue segments under `prefix` (not the NBBO's, nor the processes' latency and lock files)."""
    directory = os.environ.get("FH_SHM_DIR", DEFAULT_DIR)
    paths = glob.glob(os.path.join(directory, f"{glob.escape(prefix)}.*"))
    names = [os.path.basename(path)[len(prefix) + 1:] for path in paths]
    return sorted(n for n in names if n != "nbbo" and not n.startswith((LATENCY_FILES, LOCK_FILES)))


def segment_prefixes(directory: str | None = None) -> list[str]:
    """The prefixes of the fh segments in `directory` ($FH_SHM_DIR or /dev/shm): the files a reader
    would trust that start with a segment header, whose name is `<prefix>.<the name in that header>`."""
    directory = directory or os.environ.get("FH_SHM_DIR", DEFAULT_DIR)
    found = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:  # no such directory: no segments
        return []
    for entry in entries:
        try:
            fd = open_trusted(entry.path)
        except (SegmentError, OSError):  # not ours to read, or gone
            continue
        try:
            header = os.pread(fd, HEADER_BYTES, 0)
        except OSError:
            continue
        finally:
            os.close(fd)
        if len(header) < HEADER_BYTES or int.from_bytes(header[:8], "little") != MAGIC:
            continue
        name = header[HEADER_NAME_AT:].split(b"\0", 1)[0].decode(errors="replace")
        if name and entry.name.endswith(f".{name}"):
            found.add(entry.name[:-len(name) - 1])
    return sorted(found)


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
