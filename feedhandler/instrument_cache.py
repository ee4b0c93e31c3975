"""Venue instrument metadata kept on disk, so a venue process starts when the venue's metadata
endpoint is down, slow or rate-limited, and offline tools resolve symbols without the network.

The raw response is kept (`<directory>/<venue>.json`: venue, url, fetch time, body), not our parsed
form, so a better parser applies to old files. A response is parsed before it replaces the file,
and the write is atomic: a bad response never destroys a good cache.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .instruments import Instrument
from .venues import VENUES

DEFAULT_DIRECTORY = Path.home() / ".cache" / "fh" / "instruments"


class InstrumentCacheError(ValueError):
    """A metadata response or cache file that cannot be used, naming the file or venue and why."""


def parse_metadata(venue: str, body: bytes | str) -> list[Instrument]:
    """Instruments from a venue's metadata response body, as the metadata names them; raises
    InstrumentCacheError."""
    if venue not in VENUES:
        raise InstrumentCacheError(f"no instrument parser for venue {venue!r} (known: {', '.join(VENUES)})")
    try:
        instruments = VENUES[venue].parse_instruments(venue, json.loads(body))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InstrumentCacheError(f"{venue} metadata response does not parse: {exc!r}") from exc
    if not instruments:
        raise InstrumentCacheError(f"{venue} metadata response lists no instruments")
    return instruments


class InstrumentCache:
    def __init__(self, directory: str | os.PathLike = DEFAULT_DIRECTORY):
        self.directory = Path(directory)

    def path(self, venue: str) -> Path:
        return self.directory / f"{venue}.json"

    def store(self, venue: str, url: str, body: bytes, fetched_ns: int | None = None) -> list[Instrument]:
        """Parse a fresh metadata response and, only if it parses, make it the cached one."""
        instruments = parse_metadata(venue, body)
        record = {"venue": venue, "url": url, "fetched_ns": fetched_ns or time.time_ns(),
                  "body": body.decode() if isinstance(body, bytes) else body}
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{venue}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(venue))
        except BaseException:
            os.unlink(tmp)
            raise
        return instruments

    def record(self, venue: str) -> dict | None:
        """The cached response as stored ({venue, url, fetched_ns, body}), None when there is none."""
        path = self.path(venue)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise InstrumentCacheError(f"{path}: unreadable instrument cache: {exc}") from exc
        if not isinstance(record, dict) or record.get("venue") != venue or not isinstance(record.get("body"), str):
            raise InstrumentCacheError(f"{path}: not an instrument cache for {venue}")
        return record

    def load(self, venue: str) -> tuple[list[Instrument], int] | None:
        """(instruments, fetch time ns) from the cached response, None when there is none."""
        record = self.record(venue)
        if record is None:
            return None
        path = self.path(venue)
        try:
            return parse_metadata(venue, record["body"]), int(record.get("fetched_ns", 0))
        except InstrumentCacheError as exc:
            raise InstrumentCacheError(f"{path}: {exc}") from exc
