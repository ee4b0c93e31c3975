"""The `fh` command line."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys


def _bench_book(args: argparse.Namespace) -> dict:
    if args.capture:
        from .bench import book_capture
        return book_capture.run(args.capture, rounds=args.rounds, unit_tick=args.unit_tick, peers=args.peers)
    from .bench import book
    return book.run(levels=args.levels, diffs=args.diffs)


def _bench_shm(args: argparse.Namespace) -> dict:
    from .bench import shm
    return shm.run(samples=args.samples, records=args.records)


def _bench_decode(args: argparse.Namespace) -> dict:
    from .bench import decode
    return decode.run(frames=args.frames)


def _bench_replay(args: argparse.Namespace) -> dict:
    from .replay import replay
    summary = replay([args.file], shm_prefix=f"fhbench{os.getpid()}")  # first pass compiles and warms
    summary = replay([args.file], shm_prefix=f"fhbench{os.getpid()}")
    return {"frames": summary["frames"], "msgs_per_s": summary["msgs_per_s"], "elapsed_s": summary["elapsed_s"]}


def _bench_wire(args: argparse.Namespace) -> dict:
    from .bench import wire
    return wire.run(tuple(args.clients.split(",")), seconds=args.seconds)


def _bench_nbbo(args: argparse.Namespace) -> dict:
    from .bench import nbbo
    return nbbo.run(samples=args.samples)


def _bench_sinks(args: argparse.Namespace) -> dict:
    from .bench import sinks
    return sinks.run(args.records)


def _bench_query(args: argparse.Namespace) -> dict:
    from .bench import query
    return query.run(args.trades, args.repeats)


def _demo(args: argparse.Namespace) -> dict:
    from . import demo
    from shm.segment import segment_path
    print(f"fh demo: publishing to {segment_path(args.prefix, args.venue)} for {args.duration:g} s", file=sys.stderr)
    return demo.run(prefix=args.prefix, venue=args.venue, duration_s=args.duration, rate=args.rate)


def _capture_info(args: argparse.Namespace) -> int:
    from . import capture_info
    return capture_info.run(args.file, args.json)


def _capture_import(args: argparse.Namespace) -> dict:
    from .importers import cryptofeed
    return cryptofeed.import_recordings(args.paths, args.output)


def _replay(args: argparse.Namespace) -> dict:
    from .replay import replay
    summary = replay(args.files, shm_prefix=args.shm_prefix, depth=args.depth, speed=args.speed,
                     summary_json=args.summary_json, keep=args.keep)
    return {key: value for key, value in summary.items() if key != "books"} | {"books": len(summary["books"])}


def _config(args: argparse.Namespace):
    from feedhandler.config import load_config
    return load_config(args.config)


def _sim(args: argparse.Namespace) -> int:
    import asyncio

    from workers.process import new_loop, set_title, setup_logging
    from .sim.server import ReplaySim, Simulator, SimulatorError, parse_fault, parse_limits
    setup_logging("fh.sim")
    set_title("fh: sim")
    limits = parse_limits(args.limit)
    if args.replay:
        if limits or args.allow_crosses:
            raise ValueError("--limit and --allow-crosses apply to the synthetic venues, not to --replay")
        replay = ReplaySim(args.replay, args.speed)
        simulator = Simulator({replay.name: replay}, base_port=args.port)
    else:
        simulator = Simulator.synthetic(args.venues.split(","), rate=args.rate, seed=args.seed, base_port=args.port,
                                        limits=limits, allow_crosses=args.allow_crosses)
    simulator.schedule = [parse_fault(text) for text in args.fault]
    unknown = {venue for _, venue, _ in simulator.schedule} - set(simulator.venues)
    if unknown:
        raise ValueError(f"--fault names venues the simulator does not run: {sorted(unknown)}")
    loop = new_loop()
    try:
        loop.run_until_complete(simulator.start())  # listening before anyone is told where to connect
    except SimulatorError as exc:
        print(f"fh: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(simulator.urls()), flush=True)
    task = loop.create_task(simulator.serve(args.duration))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    return 0


def _run(args: argparse.Namespace) -> int:
    from workers import supervisor
    config = _config(args)
    result = supervisor.run(args.config, config, args.duration)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1), flush=True)
    silent = supervisor.never_valid(config, result) if args.duration else {}  # stopped by a signal: as asked
    if silent:
        why = "; ".join(f"{venue}: {reason}" for venue, reason in silent.items())
        print(f"fh run: no valid book during the run from {', '.join(silent)} ({why}); its worker's log lines above "
              f"say why (is the venue reachable? `fh plan -c {args.config}` lists what it asks)", file=sys.stderr)
        return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers import venue
    config = _config(args)
    if args.venue not in config.venues:
        raise ValueError(f"{args.config}: no [venues.{args.venue}] section")
    return venue.main(config, args.venue, args.duration)


def _plan(args: argparse.Namespace) -> int:
    from . import plan
    return plan.main(_config(args), args.json)


def _aggregator(args: argparse.Namespace) -> int:
    from workers import aggregator
    return aggregator.main(_config(args), args.duration)


def _sink(args: argparse.Namespace) -> int:
    from workers import sink
    return sink.main(_config(args), args.sink, args.duration)


def _top(args: argparse.Namespace) -> int:
    from . import top
    return top.run(args.prefix, args.interval, args.once)


def _latency(args: argparse.Namespace) -> int:
    from . import latency
    return latency.run(args.prefix, args.venue, args.hop, args.json, args.png, args.watch, args.capture)


def _metrics(args: argparse.Namespace) -> int:
    from . import metrics
    return metrics.main(args)


def _query(args: argparse.Namespace) -> int:
    from . import query
    return query.main(args.sql, args.config, args.format)


def _clean(args: argparse.Namespace) -> int:
    from . import clean
    return clean.main(args.prefix, args.all)


def _warmup(args: argparse.Namespace) -> dict | int:
    from . import warmup
    todo = warmup.groups(_config(args)) if args.config else None
    try:
        return warmup.run(args.jobs, todo)
    except warmup.WarmupError as exc:
        print(f"fh warmup: {exc}", file=sys.stderr)
        return 1


class _Version(argparse.Action):
    """`--version`: the installed fh's version (its package metadata, from setup.py), looked up only
    when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print fh's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version
        try:
            print(f"fh {version('fh')}")
        except PackageNotFoundError:
            parser.exit(1, "fh: no version: fh is not installed here (pip install -e .)\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fh", description="fh: low-latency crypto market-data feed handler")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure the hot path (figures are printed, never asserted)")
    benches = bench.add_subparsers(dest="bench", required=True)

    book = benches.add_parser("book", help="numba L2 book: ns per level update, 40-level diff p50/p99")
    book.add_argument("--levels", type=int, default=5_000_000, help="level changes applied in one kernel call")
    book.add_argument("--diffs", type=int, default=100_000, help="40-level diffs to time")
    book.add_argument("--capture", metavar="FILE",
                      help="instead: replay this capture's book changes through the book alone (ns per level, per book)")
    book.add_argument("--rounds", type=int, default=7, help="--capture: timed replays (the median is reported)")
    book.add_argument("--unit-tick", action="store_true",
                      help="--capture: also replay with a ladder step of one price unit (the book before tick indexing)")
    book.add_argument("--peers", action="store_true",
                      help="--capture: also replay through the peers' books that are installed (bench/peers.py)")
    book.set_defaults(run=_bench_book, title="fh bench book")

    shm = benches.add_parser("shm", help="cross-process ring and seqlock latency, ring throughput")
    shm.add_argument("--samples", type=int, default=200_000, help="publishes timed per hop")
    shm.add_argument("--records", type=int, default=20_000_000, help="records for the throughput run")
    shm.set_defaults(run=_bench_shm, title="fh bench shm")

    decode = benches.add_parser("decode", help="per-venue frame decode+apply+publish: p50/p99, msgs/s")
    decode.add_argument("--frames", type=int, default=20_000, help="frames timed per venue")
    decode.set_defaults(run=_bench_decode, title="fh bench decode")
    replay_bench = benches.add_parser("replay", help="a capture end to end through fh replay: msgs/s")
    replay_bench.add_argument("file")
    replay_bench.set_defaults(run=_bench_replay, title="fh bench replay")

    wire = benches.add_parser("wire", help="simulator -> worker -> book in shm over loopback: p50/p99, max msgs/s")
    wire.add_argument("--clients", default="picows,websockets", help="WebSocket clients to compare")
    wire.add_argument("--seconds", type=float, default=3.0, help="seconds sent per rate")
    wire.set_defaults(run=_bench_wire, title="fh bench wire")
    nbbo = benches.add_parser("nbbo", help="venue publish -> NBBO visible to a reader, across processes")
    nbbo.add_argument("--samples", type=int, default=100_000)
    nbbo.set_defaults(run=_bench_nbbo, title="fh bench nbbo")

    sinks_bench = benches.add_parser("sinks", help="Kafka, Redis, ClickHouse sinks against real local services")
    sinks_bench.add_argument("--records", type=int, default=1_000_000,
                             help="book changes the demo writer publishes (trades come with them)")
    sinks_bench.set_defaults(run=_bench_sinks, title="fh bench sinks")
    query_bench = benches.add_parser("query", help="1-day aggregates of one symbol in chDB (the sink's schema)")
    query_bench.add_argument("--trades", type=int, default=1_000_000, help="trades per venue and symbol in the day")
    query_bench.add_argument("--repeats", type=int, default=20, help="runs of each query")
    query_bench.set_defaults(run=_bench_query, title="fh bench query")
    demo = commands.add_parser("demo", help="publish synthetic books to shared memory for trying the reader API")
    demo.add_argument("--prefix", default="fh", help="segment prefix (default fh)")
    demo.add_argument("--venue", default="demo", help="segment name (default demo)")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    demo.add_argument("--rate", type=float, default=200.0, help="book changes per second")
    demo.set_defaults(run=_demo, title="fh demo")

    capture = commands.add_parser("capture", help="capture files: inspect and import")
    captures = capture.add_subparsers(dest="capture", required=True)
    info = captures.add_parser("info", help="header, counts by kind, time range, block checks")
    info.add_argument("file")
    info.set_defaults(run=_capture_info, title="fh capture info")
    importer = captures.add_parser("import", help="turn other projects' recordings into one capture")
    importer.add_argument("--format", choices=["cryptofeed"], required=True)
    importer.add_argument("paths", nargs="+", help="cryptofeed text prefix DIR/EXCH, or a v2 .jsonl.zst file")
    importer.add_argument("-o", "--output", required=True, help="the .fhcap to write")
    importer.set_defaults(run=_capture_import, title="fh capture import")

    replay = commands.add_parser("replay", help="captured frames through the decode and book path into shm")
    replay.add_argument("files", nargs="+")
    replay.add_argument("--speed", default="max", help="max (default), realtime, or a factor such as 10")
    replay.add_argument("--shm-prefix", default="fhreplay", help="segment prefix (default fhreplay)")
    replay.add_argument("--depth", type=int, default=10, help="levels per side in books and summary")
    replay.add_argument("--summary-json", help="write the summary contract to this file")
    replay.add_argument("--keep", action="store_true", help="leave the segment (closed) for readers and sinks")
    replay.set_defaults(run=_replay, title="fh replay")

    sim = commands.add_parser("sim", help="the venues' WebSocket and REST protocols on loopback, with faults")
    sim.add_argument("--venues", default="binance,coinbase,kraken,binance_usdm,binance_coinm,okx,bybit_linear",
                     help="comma-separated (default all but bybit (spot) and bybit_inverse, which it also serves)")
    sim.add_argument("--rate", type=float, default=20.0, help="market steps per second per symbol")
    sim.add_argument("--port", type=int, default=18700, help="first port: venue k gets WS 2k, REST 2k+1")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--fault", action="append", default=[],
                     help="venue:kind[:key=value,...]@seconds, e.g. binance:drop@5, kraken:stall:seconds=3@10")
    sim.add_argument("--limit", action="append", default=[], metavar="VENUE.NAME=VALUE",
                     help="change one of the documented limits the venues enforce (repeatable), e.g. "
                          "binance.lifetime_s=1 binance.ping_every_s=0.2 binance.pong_timeout_s=0.6 "
                          "coinbase.subscribe_deadline_s=0.5 to test in seconds what takes minutes. Names "
                          "(default): binance.lifetime_s (86400), binance.ping_every_s (20), "
                          "binance.pong_timeout_s (60), binance.messages_per_s (5), "
                          "binance.streams_per_connection (1024), binance.connections_per_window (300), "
                          "binance.connections_window_s (300), binance.weight_per_window (6000), "
                          "binance.weight_window_s (60), binance.ban_s (120), coinbase.subscribe_deadline_s (5), "
                          "coinbase.messages_per_s (8), coinbase.connections_per_s (8), "
                          "coinbase.level2_per_connection (16), okx.connections_per_s (3), "
                          "okx.requests_per_hour (480), okx.idle_s (30), okx.instruments_per_2s (20); the futures "
                          "venues binance_usdm and binance_coinm take binance's names, with their own defaults: "
                          "binance_usdm.lifetime_s (86400), binance_usdm.ping_every_s (180), "
                          "binance_usdm.pong_timeout_s (600), binance_usdm.messages_per_s (10), "
                          "binance_usdm.streams_per_connection (200), binance_usdm.connections_per_window (300), "
                          "binance_usdm.connections_window_s (300), binance_usdm.weight_per_window (2400), "
                          "binance_usdm.weight_window_s (60), binance_usdm.ban_s (120), "
                          "binance_coinm.lifetime_s (86400), binance_coinm.ping_every_s (180), "
                          "binance_coinm.pong_timeout_s (600), binance_coinm.messages_per_s (10), "
                          "binance_coinm.streams_per_connection (200), binance_coinm.connections_per_window (300), "
                          "binance_coinm.connections_window_s (300), binance_coinm.weight_per_window (2400), "
                          "binance_coinm.weight_window_s (60), binance_coinm.ban_s (120); Bybit "
                          "(args_per_request 0: no cap): "
                          "bybit_linear.args_per_request (0), bybit_linear.args_chars (21000), "
                          "bybit_linear.ping_timeout_s (600), bybit_linear.connections_per_window (500), "
                          "bybit_linear.connections_window_s (300), bybit_linear.instruments_page (500), "
                          "bybit_linear.instruments_page_max (1000), and the same names and defaults for "
                          "bybit_inverse.args_per_request (0), bybit_inverse.args_chars (21000), "
                          "bybit_inverse.ping_timeout_s (600), bybit_inverse.connections_per_window (500), "
                          "bybit_inverse.connections_window_s (300), bybit_inverse.instruments_page (500), "
                          "bybit_inverse.instruments_page_max (1000) and spot's: bybit.args_per_request (10), "
                          "bybit.args_chars (21000), bybit.ping_timeout_s (600), bybit.connections_per_window (500), "
                          "bybit.connections_window_s (300), bybit.instruments_page (500), "
                          "bybit.instruments_page_max (1000)")
    sim.add_argument("--allow-crosses", action="store_true",
                     help="let a venue quote through another venue's touch, so the NBBO locks and crosses (by "
                          "default none does, as arbitrage keeps live venues from it)")
    sim.add_argument("--replay", help="serve this capture instead of a synthetic market")
    sim.add_argument("--speed", type=float, default=1.0, help="replay pace factor (0: as fast as possible)")
    sim.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until stopped)")
    sim.set_defaults(run=_sim, title="fh sim")

    run = commands.add_parser("run", help="supervise a venue worker per configured venue and the aggregator")
    run.add_argument("-c", "--config", required=True, help="TOML run configuration")
    run.add_argument("--duration", type=float, default=0.0, help="seconds once the pipeline is up (0: until stopped)")
    run.set_defaults(run=_run, title="fh run")
    worker = commands.add_parser("worker", help="one venue worker process (what fh run starts)")
    worker.add_argument("venue", help="a [venues.NAME] of the configuration")
    worker.add_argument("-c", "--config", required=True)
    worker.add_argument("--duration", type=float, default=0.0)
    worker.set_defaults(run=_worker, title="fh worker")
    plan = commands.add_parser("plan", help="every connection, message and REST request the workers would make "
                                            "(no network)")
    plan.add_argument("-c", "--config", required=True)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(run=_plan, title="fh plan")
    aggregator = commands.add_parser("aggregator", help="the NBBO aggregator process (what fh run starts)")
    aggregator.add_argument("-c", "--config", required=True)
    aggregator.add_argument("--duration", type=float, default=0.0)
    aggregator.set_defaults(run=_aggregator, title="fh aggregator")
    sink = commands.add_parser("sink", help="one fan-out sink process (what fh run starts per [sinks.NAME])")
    sink.add_argument("sink", choices=["kafka", "redis", "clickhouse"])
    sink.add_argument("-c", "--config", required=True)
    sink.add_argument("--duration", type=float, default=0.0)
    sink.set_defaults(run=_sink, title="fh sink")
    top = commands.add_parser("top", help="live terminal view: NBBO, venue books, rates, gaps")
    top.add_argument("--prefix", default="fh")
    top.add_argument("--interval", type=float, default=1.0)
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(run=_top, title="fh top")
    latency = commands.add_parser("latency", help="per-hop latency percentiles from shared memory, or over a capture")
    latency.add_argument("--prefix", default="fh")
    latency.add_argument("--venue", help="only this venue (for the sink hop: this sink)")
    latency.add_argument("--hop", help="only this hop: exchange, decode, publish, aggregator, nbbo, sink")
    latency.add_argument("--json", action="store_true", help="print one JSON object (ns)")
    latency.add_argument("--png", metavar="FILE", help="also draw the percentile curves into FILE")
    latency.add_argument("--watch", nargs="?", type=float, const=1.0, metavar="S",
                         help="redraw every S seconds (default 1)")
    latency.add_argument("--capture", metavar="FILE",
                         help="replay FILE here and report its processing hops (decode, publish) instead")
    latency.set_defaults(run=_latency, title="fh latency")
    metrics = commands.add_parser("metrics", help="Prometheus /metrics and /healthz, read from shared memory")
    metrics.add_argument("-c", "--config", help="a run config: its prefix, and its sinks' stats files")
    metrics.add_argument("--prefix", help="segment prefix (default: the config's, else fh)")
    metrics.add_argument("--port", type=int, default=9464, help="TCP port (0: any free one; default 9464)")
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    metrics.set_defaults(run=_metrics, title="fh metrics")
    query = commands.add_parser("query", help="a read-only SQL query against the stored data (ClickHouse sink), "
                                              "also while the sink runs")
    query.add_argument("sql", help="SELECT, WITH, SHOW, DESCRIBE or EXPLAIN; e.g. "
                                   "\"SELECT * FROM trades_readable ORDER BY ts_exchange DESC LIMIT 10\"")
    query.add_argument("-c", "--config", default="configs/sim.toml",
                       help="the run config whose [sinks.clickhouse] stores the data (default configs/sim.toml, "
                            "what make run runs)")
    query.add_argument("--format", choices=["table", "json", "csv"], default="table",
                       help="table (default), json (a list of row objects), csv")
    query.set_defaults(run=_query, title="fh query")
    clean = commands.add_parser("clean", help="remove the segments, latency files and locks under a prefix that no "
                                              "live process holds")
    cleaned = clean.add_mutually_exclusive_group()
    cleaned.add_argument("--prefix", default="fh", help="segment prefix (default fh)")
    cleaned.add_argument("--all", action="store_true", help="every prefix holding fh files")
    clean.set_defaults(run=_clean, title="fh clean")
    warmup = commands.add_parser("warmup", help="compile every command's kernels into the on-disk cache")
    warmup.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="kernel groups compiled at once (default: one per CPU this process may use)")
    warmup.add_argument("-c", "--config", help="only what `fh run -c CONFIG` needs (its venues' protocols, the "
                                               "aggregator, readers, sinks), not replay, demo and bench")
    warmup.set_defaults(run=_warmup, title="fh warmup")

    for sub in (book, shm, decode, replay_bench, wire, nbbo, sinks_bench, query_bench, demo, info, importer, replay,
                run, warmup):
        sub.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .bench.stats import emit
    for name in ("levels", "diffs", "samples", "records", "frames", "rate", "interval", "seconds", "trades",
                 "repeats", "jobs", "rounds"):
        if getattr(args, name, 1) <= 0:
            print(f"fh: --{name} must be > 0", file=sys.stderr)
            return 2
    for name in ("duration",):
        if getattr(args, name, 0) < 0 or (args.command == "demo" and args.duration == 0):
            print(f"fh: --{name} must be > 0", file=sys.stderr)
            return 2
    from feedhandler.capture import CaptureError
    from shm.segment import SegmentError
    from .importers.cryptofeed import RecordingError
    from workers.process import InstanceLockError
    from workers.sinks.runner import SinkConfigError
    from .replay import ReplayError
    try:
        result = args.run(args)
    except (CaptureError, SegmentError, RecordingError, ReplayError, SinkConfigError, InstanceLockError,
            ValueError) as exc:
        print(f"fh: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that is a directory, not readable, not there: the path and why
        print(f"fh: {exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else f"fh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands that end on Ctrl-C (fh top, fh latency --watch) catch it themselves
        print(f"{args.title}: interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int):
        return result
    emit(args.title, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
