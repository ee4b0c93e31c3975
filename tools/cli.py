"""The `fh` command line."""
from __future__ import annotations

import argparse
import os
import sys


def _bench_book(args: argparse.Namespace) -> dict:
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


def _demo(args: argparse.Namespace) -> dict:
    from . import demo
    print(f"fh demo: publishing to /dev/shm/{args.prefix}.{args.venue} for {args.duration:g} s", file=sys.stderr)
    return demo.run(prefix=args.prefix, venue=args.venue, duration_s=args.duration, rate=args.rate)


def _capture_info(args: argparse.Namespace) -> dict:
    from feedhandler.capture import CaptureReader
    return CaptureReader(args.file).verify()


def _capture_import(args: argparse.Namespace) -> dict:
    from .importers import cryptofeed
    return cryptofeed.import_recordings(args.paths, args.output)


def _replay(args: argparse.Namespace) -> dict:
    from .replay import replay
    summary = replay(args.files, shm_prefix=args.shm_prefix, depth=args.depth, speed=args.speed,
                     summary_json=args.summary_json)
    return {key: value for key, value in summary.items() if key != "books"} | {"books": len(summary["books"])}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fh", description="fh: low-latency crypto market-data feed handler")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure the hot path (figures are printed, never asserted)")
    benches = bench.add_subparsers(dest="bench", required=True)

    book = benches.add_parser("book", help="numba L2 book: ns per level update, 40-level diff p50/p99")
    book.add_argument("--levels", type=int, default=5_000_000, help="level changes applied in one kernel call")
    book.add_argument("--diffs", type=int, default=100_000, help="40-level diffs to time")
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
    replay.set_defaults(run=_replay, title="fh replay")

    for sub in (book, shm, decode, replay_bench, demo, info, importer, replay):
        sub.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .bench.stats import emit
    for name in ("levels", "diffs", "samples", "records", "frames", "duration", "rate"):
        if getattr(args, name, 1) <= 0:
            print(f"fh: --{name} must be > 0", file=sys.stderr)
            return 2
    from feedhandler.capture import CaptureError
    from shm.segment import SegmentError
    from .importers.cryptofeed import RecordingError
    from .replay import ReplayError
    try:
        result = args.run(args)
    except (CaptureError, SegmentError, RecordingError, ReplayError, FileNotFoundError) as exc:
        print(f"fh: {exc}", file=sys.stderr)
        return 2
    emit(args.title, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
