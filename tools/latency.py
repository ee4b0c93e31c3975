"""`fh latency`: per-hop latency percentiles from the shared-memory histograms (shm.latency) of a
running pipeline, or of the processing hops over a capture replayed here (`--capture`)."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from feedhandler.capture import CaptureReader, FrameKind
from feedhandler.publish import LAT_DECODE, LAT_PUBLISH, VENUE_HOPS
from shm.histogram import HIST_WORDS, difference, quantiles, summary
from shm.latency import HOPS, NAME_PREFIX, read_latency
from shm.segment import SegmentWriter

from .attached import nothing_under
from .replay import capture_feed

PERCENTILES = (50, 90, 99, 99.9)
CURVE = np.array([0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100.0])  # what --png draws


def live(prefix: str, venue: str | None = None, hop: str | None = None) -> list[dict]:
    """One row per (hop, label) of every process under `prefix`: count, mean, percentiles, max (ns).
    `venue` filters on the label (a venue; for the sink hop, the sink's name)."""
    if hop is not None and hop not in HOPS:
        raise ValueError(f"--hop must be one of {', '.join(HOPS)}")
    return [{"hop": h.hop, "label": h.label, "process": h.process, "pid": h.pid, **summary(h.counts, PERCENTILES),
             "counts": h.counts}
            for h in read_latency(prefix) if (venue is None or h.label == venue) and (hop is None or h.hop == hop)]


def over_capture(path: str) -> list[dict]:
    """Replay a capture through its venue's feed one frame at a time, each stamped as received when it
    is handed over: the receive -> decoded and decoded -> published hops of this machine on recorded
    traffic (the exchange hop needs live traffic, so it is not reported)."""
    reader = CaptureReader(path)
    venue = reader.header["venue"]
    feed_class, instruments = capture_feed(reader)
    rows = np.zeros((len(VENUE_HOPS), HIST_WORDS), np.int64)
    prefix = f"fhlat{os.getpid()}"
    with SegmentWriter.create(prefix, venue, [i.spec(feed_class.CAPACITY) for i in instruments], depth=10,
                              ring_slots=1 << 16) as writer:
        feed = feed_class(instruments, writer, latency=rows)
        try:
            for frame in reader.frames():
                if frame.kind == FrameKind.WS_RECV:
                    feed.on_frame(frame.payload, time.time_ns(), frame.conn)
                elif frame.kind != FrameKind.WS_SENT:
                    feed.on_event(FrameKind(frame.kind), frame.payload, time.time_ns(), frame.conn)
        finally:
            writer.close(unlink=True)
    return [{"hop": VENUE_HOPS[k], "label": venue, "process": f"capture {os.path.basename(path)}", "pid": os.getpid(),
             **summary(rows[k], PERCENTILES), "counts": rows[k]} for k in (LAT_DECODE, LAT_PUBLISH)]


def as_json(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "counts"} for row in rows]


def _us(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e3:,.1f}"


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width table in µs, in pipeline order."""
    columns = ["hop", "label", "count"] + [f"p{p:g}" for p in PERCENTILES] + ["max", "process"]
    lines = [columns]
    for row in rows:
        lines.append([row["hop"], row["label"], f"{row['count']:,}"]
                     + [_us(row[f"p{p:g}_ns"]) for p in PERCENTILES] + [_us(row["max_ns"]), row["process"]])
    widths = [max(len(line[k]) for line in lines) for k in range(len(columns))]
    text = ["  ".join(cell.ljust(w) if k < 2 or k == len(columns) - 1 else cell.rjust(w)
                      for k, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    notes = [f"  {row['hop']} {row['label']}: {row['negative']:,} negative (venue clock ahead of ours)"
             for row in rows if row["negative"]]
    return "\n".join(text + ["(µs)"] + notes)


def plot(rows: list[dict], path: str) -> None:
    """Percentile curves of every row, log-log, tail stretched out (x: 1 / (1 - q))."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("fh latency --png needs matplotlib: pip install 'fh[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(10, 6))
    x = 1 / (1 - np.minimum(CURVE / 100, 0.99999))
    for row in rows:
        if not row["count"]:
            continue
        values = np.array(quantiles(row["counts"], CURVE / 100), float) / 1e3
        axes.plot(x, np.maximum(values, 1e-3), marker=".", label=f"{row['hop']} {row['label']} (n={row['count']:,})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(x, [f"p{p:g}" for p in CURVE], rotation=45)
    axes.set_ylabel("latency (µs)")
    axes.set_title("fh latency per hop")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(prefix: str, venue: str | None, hop: str | None, as_json_out: bool, png: str | None, watch: float | None,
        capture: str | None) -> int:
    """Print the rows: one JSON object ({"hops": [...]}, ns), or a table (--watch: again every interval
    until Ctrl-C, which ends it as a user's normal way out: exit 0). Once (without --watch, or with
    --json): 1 when there was nothing to report, the reason on stderr."""
    if watch and capture:
        raise ValueError("--watch follows a running pipeline; it does not go with --capture")
    rows = over_capture(capture) if capture else live(prefix, venue, hop)
    if png:
        plot(rows, png)
    if as_json_out or not watch:
        if as_json_out:
            print(json.dumps({"prefix": None if capture else prefix, "capture": capture, "hops": as_json(rows)}))
        elif rows:
            print(table(rows))
        if not rows:
            print(f"fh latency: {_nothing(prefix, venue, hop)}", file=sys.stderr)
        return 0 if rows else 1
    try:
        while True:  # each refresh shows the interval since the previous one, until Ctrl-C
            time.sleep(watch)
            previous = {_key(row): row["counts"] for row in rows}
            rows = live(prefix, venue, hop)
            window = [_interval(row, previous.get(_key(row))) for row in rows]
            sys.stdout.write("\x1b[H\x1b[2J")
            print(f"last {watch:g} s (fh latency without --watch: since each process started)")
            print(table(window) if window else _nothing(prefix, venue, hop), flush=True)
    except KeyboardInterrupt:
        return 0


def _nothing(prefix: str, venue: str | None, hop: str | None) -> str:
    """Why there are no rows: nothing under the prefix (and which prefixes there are), or the filters."""
    if (venue or hop) and read_latency(prefix):
        chosen = " and ".join(f"--{name} {value}" for name, value in (("venue", venue), ("hop", hop)) if value)
        return f"the latency histograms under prefix {prefix!r} have no row for {chosen}; drop it to see them all"
    return nothing_under(prefix, "no latency histograms", f"{NAME_PREFIX}*")


def _key(row: dict) -> tuple:
    return row["process"], row["pid"], row["hop"], row["label"]


def _interval(row: dict, older: np.ndarray | None) -> dict:
    """The row over the interval since `older` (the whole row when it is new: a restarted process)."""
    counts = row["counts"] if older is None else difference(row["counts"], older)
    return {**row, **summary(counts, PERCENTILES), "counts": counts}
