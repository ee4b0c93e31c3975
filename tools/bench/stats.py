"""Percentiles, machine description and output shared by the benchmarks."""
from __future__ import annotations

import json
import os
import platform

import numpy as np


def percentiles(samples: np.ndarray, prefix: str) -> dict[str, float]:
    """`<prefix>_p50_ns`, `_p99_ns`, `_p999_ns` and `_max_ns` of nanosecond samples."""
    q50, q99, q999 = np.percentile(samples, [50, 99, 99.9])
    return {f"{prefix}_p50_ns": float(q50), f"{prefix}_p99_ns": float(q99), f"{prefix}_p999_ns": float(q999),
            f"{prefix}_max_ns": float(np.max(samples))}


def machine() -> dict[str, object]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def emit(title: str, result: dict[str, object], as_json: bool) -> None:
    """One JSON object on one line, or an aligned human table."""
    if as_json:
        print(json.dumps(result))
        return
    print(title)
    for key, value in result.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else value
        print(f"  {key:<28} {shown}")
