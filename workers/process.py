"""What every fh process does at start: pin itself, name itself, log, take the run's shared-memory
access (its stop signal: lifecycle.Stop)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

from feedhandler.config import RunConfig


def pin(cpu: int | None) -> list[int]:
    """Pin this process to `cpu` (None: leave the affinity alone); returns the affinity now."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return sorted(os.sched_getaffinity(0))


def set_title(title: str) -> None:
    """A readable process title for ps/top (`fh: venue binance`)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the context fields of the process
    and of the call (`extra={"conn": 1, "reason": "stale"}`), for log shippers and jq."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        event.update((key, value) for key, value in vars(record).items() if key not in self._STANDARD)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)

    converter = time.gmtime


def setup_logging(name: str, run: RunConfig | None = None, **context: object) -> logging.Logger:
    """Logging of this process to stderr: level and format from the run config, FH_LOG_LEVEL and
    FH_LOG_FORMAT winning; `context` (venue, sink, ...) goes on every record."""
    level = os.environ.get("FH_LOG_LEVEL") or (run.log_level if run else "info")
    json_lines = (os.environ.get("FH_LOG_FORMAT") or (run.log_format if run else "text")) == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else
                         logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    if context:
        def add_context(record: logging.LogRecord) -> bool:
            for key, value in context.items():
                setattr(record, key, getattr(record, key, value))
            return True
        handler.addFilter(add_context)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return logging.getLogger(name)


def apply_shm_access(run: RunConfig | None) -> None:
    """The run's `shm_group` and `writer_uid` as $FH_SHM_GROUP / $FH_SHM_WRITER_UID, which shm's
    writers and readers (and this process's children) take; variables already set win."""
    if run is None:
        return
    if run.shm_group:
        os.environ.setdefault("FH_SHM_GROUP", run.shm_group)
    if run.writer_uid is not None:
        os.environ.setdefault("FH_SHM_WRITER_UID", str(run.writer_uid))


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster socket and timer paths), else asyncio's default."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
