"""Fan-out sinks: Kafka, Redis and ClickHouse, each reading the rings like any other reader.

`fh sink NAME -c CONFIG` runs one as a process of its own (what `fh run` starts for every
[sinks.NAME] section); with `in_aggregator = true` it runs as a thread of the aggregator instead.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from feedhandler.config import RunConfig, SinkConfig

from .runner import Sink, SinkConfigError, SinkDown, SinkRunner

__all__ = ["make_sink", "make_runner", "rings_of", "SinkConfigError", "SinkDown", "SinkRunner"]


def make_sink(config: SinkConfig) -> Sink:
    """The sink for a [sinks.NAME] section (its client library is imported only when used)."""
    if config.name == "kafka":
        from .kafka import KafkaSink
        return KafkaSink(config)
    if config.name == "redis":
        from .redis import RedisSink
        return RedisSink(config)
    from .clickhouse import ClickHouseSink
    return ClickHouseSink(config)


def rings_of(run: RunConfig) -> list[str]:
    """Every venue ring of the run, and the NBBO ring when the aggregator runs."""
    return sorted(run.venues) + (["nbbo"] if run.aggregator.enabled else [])


def make_runner(run: RunConfig, name: str, directory: str | None = None,
                log: logging.Logger | None = None) -> tuple[SinkRunner, Callable[[int], float] | None]:
    """A runner for the sink `name` of `run`, and its pacing (Redis: the command budget)."""
    if name not in run.sinks:
        raise SinkConfigError(f"{run.source}: no [sinks.{name}] section")
    sink = make_sink(run.sinks[name])
    return SinkRunner(sink, run.sinks[name], run.prefix, rings_of(run), directory, log), getattr(sink, "pace", None)
