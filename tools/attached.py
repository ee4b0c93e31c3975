"""Readers of the segments under one prefix for tools that poll them (fh top, fh metrics): attached on
first use, and again once a new writer replaced the segment."""
from __future__ import annotations

import glob
import os

from shm.latency import NAME_PREFIX as LATENCY_FILES
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.segment import DEFAULT_DIR, SegmentError
from workers.process import LOCK_NAME as LOCK_FILES


def venue_names(prefix: str) -> list[str]:
    """The venue segments under `prefix` (not the NBBO's, nor the processes' latency and lock files)."""
    directory = os.environ.get("FH_SHM_DIR", DEFAULT_DIR)
    paths = glob.glob(os.path.join(directory, f"{glob.escape(prefix)}.*"))
    names = [os.path.basename(path)[len(prefix) + 1:] for path in paths]
    return sorted(n for n in names if n != "nbbo" and not n.startswith((LATENCY_FILES, LOCK_FILES)))


class AttachedReaders:
    """Readers by segment name under one prefix; a replaced segment is attached again."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._readers: dict[str, VenueReader] = {}

    def get(self, name: str) -> VenueReader | None:
        """The reader of segment `name` (`nbbo`: an NbboReader); None while there is none."""
        reader = self._readers.get(name)
        if reader is not None and reader.replaced:
            reader.close()
            reader = None
        if reader is None:
            try:
                reader = NbboReader(self.prefix) if name == "nbbo" else VenueReader(name, prefix=self.prefix)
            except SegmentError:
                return None
            self._readers[name] = reader
        return reader

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
