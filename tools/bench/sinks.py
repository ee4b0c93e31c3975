"""`fh bench sinks`: each sink against its real service on loopback (private instances started here),
draining a ring pre-filled by the demo writer (book changes and trades): ring records, messages or
rows, and this process's CPU per second of it. Then Redis against a live writer in another process
at a steady rate: publish -> visible in Redis, p50/p99."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from feedhandler.config import SINK_DEFAULTS, SinkConfig
from shm.ring import write_position
from shm.segment import Segment
from tools import demo, services
from workers.sinks import make_sink
from workers.sinks.runner import SinkRunner

from .stats import machine

WARMUP_S = 1.0


def _drain(runner: SinkRunner, head: int) -> dict:
    """Run the sink from the oldest record to `head`: throughput and CPU of this process in steady
    state, that is after the first batch (connections, lazy imports and caches warm), reported apart."""
    me = psutil.Process()
    runner.start()

    def acked() -> int:
        position = runner.sources[0].acked
        return 0 if position is None else position.next

    started = time.perf_counter()
    while not runner.counters["batches"]:
        _cycle(runner)
    first_batch_s = time.perf_counter() - started
    cpu0, t0, records0, messages0 = sum(me.cpu_times()[:2]), time.perf_counter(), acked(), runner.counters["acked"]
    while acked() < head:
        _cycle(runner)
    elapsed, cpu = time.perf_counter() - t0, sum(me.cpu_times()[:2]) - cpu0
    runner.close()
    messages = runner.counters["acked"] - messages0
    return {"records_per_s": (head - records0) / elapsed, "msgs_per_s": messages / elapsed,
            "cpu_pct": 100 * cpu / elapsed, "messages": messages, "batches": runner.counters["batches"],
            "seconds": elapsed, "first_batch_ms": first_batch_s * 1e3}


def _cycle(runner: SinkRunner) -> None:
    if not runner.cycle() and runner.last_error:
        raise RuntimeError(f"{runner.config.name} sink: {runner.last_error}")


def _runner(name: str, url: str, prefix: str, state: Path, **settings) -> SinkRunner:
    """A sink from the oldest record, with the sink's defaults and its positions in a state
    directory of its own."""
    settings = {**SINK_DEFAULTS.get(name, {}), "linger_s": 0.0, **settings}
    config = SinkConfig(name, url, state_dir=str(state / url.split(":")[0]), snapshot_interval_s=0.0, **settings)
    return SinkRunner(make_sink(config), config, prefix, ["demo"])


def _redis_live(url: str, root: Path, rate: float, seconds: float) -> dict:
    """A demo writer in its own process at `rate` changes/s; the Redis sink here follows it live."""
    prefix = f"fhbsl{os.getpid()}"
    writer = subprocess.Popen([sys.executable, "-m", "tools.cli", "demo", "--prefix", prefix, "--rate", str(rate),
                               "--duration", str(seconds + 30)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(f"/dev/shm/{prefix}.demo"):
            if time.monotonic() > deadline or writer.poll() is not None:
                raise RuntimeError("the demo writer did not start")
            time.sleep(0.05)
        runner = _runner("redis", url, prefix, root / "live", batch_max=4096)
        me = psutil.Process()
        runner.start()

        def follow(for_s: float) -> None:
            until = time.perf_counter() + for_s
            runner.follow(lambda: time.perf_counter() >= until, runner.sink.pace)

        follow(WARMUP_S)  # the backlog written before the sink attached is not live latency
        runner.forget_latency()
        commands0, cpu0, t0 = runner.counters["commands"], sum(me.cpu_times()[:2]), time.perf_counter()
        follow(seconds)
        elapsed, cpu = time.perf_counter() - t0, sum(me.cpu_times()[:2]) - cpu0
        runner.close()
        figures = runner.latency_percentiles()
        return {"rate": rate, "commands_per_s": (runner.counters["commands"] - commands0) / elapsed,
                "cpu_pct": 100 * cpu / elapsed, **figures}
    finally:
        writer.terminate()
        writer.wait(10)
        for path in Path("/dev/shm").glob(f"{prefix}.*"):
            path.unlink()


def ring_slots_for(changes: int) -> int:
    """A ring that holds every record of `changes` book changes and their trades (under 2 per change)."""
    return 1 << (2 * changes - 1).bit_length()


def run(records: int = 1_000_000, live_rate: float = 2000.0, live_seconds: float = 5.0) -> dict:
    root = Path(tempfile.mkdtemp(prefix="fh-bench-sinks-"))
    prefix = f"fhbs{os.getpid()}"
    started = []
    try:
        demo.run(prefix, "demo", duration_s=600, rate=1e9, ring_slots=ring_slots_for(records), changes=records)
        with Segment(prefix, "demo") as segment:
            head = int(write_position(segment.ring_control))
        result: dict = {"ring_records": head}
        kafka = services.start("kafka", root)
        started.append(kafka)
        result["kafka"] = _drain(_runner("kafka", kafka.url, prefix, root), head)
        redis = services.start("redis", root)
        started.append(redis)
        result["redis"] = _drain(_runner("redis", redis.url, prefix, root), head)
        result["redis"]["live"] = _redis_live(redis.url, root, live_rate, live_seconds)
        chdb = _drain(_runner("clickhouse", f"chdb://{root / 'chdb'}", prefix, root), head)
        server = services.start("clickhouse", root)
        started.append(server)
        native = _drain(_runner("clickhouse", server.url, prefix, root), head)
        result["clickhouse"] = {"rows_per_s": chdb["msgs_per_s"], "cpu_pct": chdb["cpu_pct"], "transport": "chdb",
                                "records_per_s": chdb["records_per_s"], "first_batch_ms": chdb["first_batch_ms"]}
        result["clickhouse_native"] = {"rows_per_s": native["msgs_per_s"], "cpu_pct": native["cpu_pct"],
                                       "transport": "clickhouse-server 18.16 native",
                                       "records_per_s": native["records_per_s"],
                                       "first_batch_ms": native["first_batch_ms"]}
        result["machine"] = machine()
        return result
    finally:
        for service in started:
            service.stop()
        for path in Path("/dev/shm").glob(f"{prefix}.*"):
            path.unlink()
        shutil.rmtree(root, ignore_errors=True)
