"""What every fh process does at start: pin itself, name itself, log, and stop cleanly on signals."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys


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


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("FH_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return logging.getLogger(name)


def stop_flag() -> list[bool]:
    """[False] until SIGTERM / SIGINT sets it: the stop signal of a process without an event loop."""
    stop = [False]

    def request_stop(*_) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM / SIGINT set `stop`; the process then shuts down in order."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster socket and timer paths), else asyncio's default."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
