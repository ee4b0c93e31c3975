"""`fh sink NAME -c CONFIG`: one sink as a process of its own (pinned, titled, stopped by SIGTERM after
delivering what the rings hold), or as a thread inside the aggregator (`start_in_thread`)."""
from __future__ import annotations

import json
import logging
import threading

from feedhandler.config import RunConfig

from .notify import Notifier
from .lifecycle import Stop
from .process import apply_shm_access, pin, set_title, setup_logging
from .sinks import make_runner


def main(run: RunConfig, name: str, duration_s: float = 0.0) -> int:
    log = setup_logging(f"fh.sink.{name}", run, sink=name)
    apply_shm_access(run)
    config = run.sinks.get(name)
    pin(config.cpu if config else None)
    set_title(f"fh: sink {name}")
    runner, pace = make_runner(run, name, log=log)
    stop = Stop().on_signals().expire_after(duration_s)
    notifier = Notifier()

    def alive() -> None:  # every round once started (a service that is down is retried: the sink is up)
        if not ready:
            ready.append(notifier.ready(f"{name} sink"))
        notifier.watchdog()
    ready: list[bool] = []
    stats = runner.run(stop, pace, alive)
    notifier.stopping()
    log.info("%s sink stopped: %s", name, json.dumps(stats))
    return 0


def start_in_thread(run: RunConfig, name: str, stop: Stop) -> threading.Thread:
    """The sink `name` as a daemon thread of the calling process, until `stop` is set."""
    runner, pace = make_runner(run, name, log=logging.getLogger(f"fh.sink.{name}"))
    thread = threading.Thread(target=runner.run, args=(stop, pace), name=f"sink-{name}", daemon=True)
    thread.start()
    return thread
