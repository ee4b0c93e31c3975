"""`fh capture info FILE`: what a capture holds, checked block by block, for a person (times as ISO
8601 UTC, sizes in bytes and binary units, frame counts by kind as a table) or, with `--json`, as
one JSON object for scripts (times in ns since the epoch, as the file stores them)."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from feedhandler.capture import CaptureReader

SHOWN_HEADER = ("format", "venue", "host", "start_ns", "clock", "compression", "config")  # the rest: as JSON


def iso_utc(ns: int | None) -> str:
    """`2026-12-07T12:00:00.123456789Z` (ns kept; '-' for None)."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def size_text(size: int) -> str:
    """`1,234,567 bytes (1.2 MiB)`."""
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if scaled < 1024:
            break
        scaled /= 1024
        if scaled < 1024 or unit == "TiB":
            return f"{size:,} bytes ({scaled:.1f} {unit})"
    return f"{size:,} bytes"


def report(path: str) -> dict:
    """The capture's verification (CaptureReader.verify) and its size on disk."""
    return CaptureReader(path).verify() | {"size_bytes": os.path.getsize(path)}


def text(info: dict) -> str:
    """The report as aligned lines: file, header, time range, blocks and frames, counts by kind, problems."""
    header = info["header"]
    clock = header.get("clock", {})
    first, last = info["first_ns"], info["last_ns"]
    span = f"{(last - first) / 1e9:,.3f} s" if first is not None else "-"
    lines = [("file", info["path"]), ("size", size_text(info["size_bytes"])),
             ("format", f"{header.get('format')} ({header.get('compression', 'none')} blocks)"),
             ("venue", str(header.get("venue"))), ("host", str(header.get("host"))),
             ("started", f"{iso_utc(header.get('start_ns'))} (clock source {clock.get('clocksource', '-')})"),
             ("first frame", iso_utc(first)), ("last frame", iso_utc(last)), ("span", span),
             ("blocks", f"{info['blocks']:,} ({info['bad_blocks']:,} failed their checks and were skipped)"),
             ("frames", f"{info['frames']:,}" + (f" ({info['unknown_frames']:,} of an unknown kind, skipped)"
                                                 if info["unknown_frames"] else "")),
             ("config", json.dumps(header.get("config", {}), sort_keys=True))]
    lines += [(key, json.dumps(value, sort_keys=True)) for key, value in header.items() if key not in SHOWN_HEADER]
    width = max(len(key) for key, _ in lines)
    out = [f"{key:<{width}}  {value}" for key, value in lines]
    counts = info["by_kind"]
    kind_width = max(map(len, ["kind", *counts]))
    count_width = max(len(f"{n:,}") for n in [*counts.values(), info["frames"]])
    out += ["", f"{'kind':<{kind_width}}  {'frames':>{count_width}}"]
    out += [f"{kind:<{kind_width}}  {n:>{count_width},}" for kind, n in counts.items()]
    out += [f"{'total':<{kind_width}}  {info['frames']:>{count_width},}", ""]
    out += [f"problems: {len(info['problems'])}"] + [f"  {problem}" for problem in info["problems"]]
    return "\n".join(out)


def run(path: str, as_json: bool) -> int:
    info = report(path)
    print(json.dumps(info) if as_json else text(info))
    return 0
