"""One JSON object per line per figure, in the format of BENCHMARKS.md (shared by every bench_*.py)."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any


def device_name() -> str:
    """Names the machine a figure was measured on: the GPU if torch or JAX sees one, else the CPU cores."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def emit(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    *,
    config: dict[str, Any],
    quick: bool,
    baseline: str | None = None,
    baseline_value: float | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Prints one figure as a JSON line on stdout and returns it. `ratio` is value / baseline_value."""
    row: dict[str, Any] = {"bench": bench, "metric": metric, "value": round(float(value), 4), "unit": unit}
    if baseline is not None and baseline_value is not None:
        row["baseline"] = baseline
        row["baseline_value"] = round(float(baseline_value), 4)
        row["ratio"] = round(float(value) / float(baseline_value), 4) if baseline_value else None
    row["config"] = config
    row["device"] = device or device_name()
    row["quick"] = bool(quick)
    print(json.dumps(row), flush=True)
    return row


def log(msg: str) -> None:
    """Human-friendly progress goes to stderr so stdout stays pure JSON lines."""
    print(msg, file=sys.stderr, flush=True)
