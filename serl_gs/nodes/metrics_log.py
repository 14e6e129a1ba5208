"""Where a node's metrics go: the console, a JSONL file, TensorBoard event files and (if asked) wandb."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


def _scalar(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows a MetricsLog wrote to `path` (`<run_dir>/<name>_metrics.jsonl`); [] while it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """`log(step, metrics)` writes one JSON line, TensorBoard scalars and optionally a wandb row.

    wandb is used only with `use_wandb=True`; it runs offline unless the user has configured it otherwise.
    """

    def __init__(self, run_dir: Path, name: str, use_wandb: bool = False, config: dict | None = None):
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / f"{name}_metrics.jsonl", "a", buffering=1)  # noqa: SIM115 (closed in close())
        from tensorboardX import SummaryWriter  # lazy: only nodes that write metrics pay for its import

        self._tb = SummaryWriter(str(run_dir / "tensorboard" / name))
        self._wandb = None
        if use_wandb:
            import wandb  # optional dependency: pip install wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb.init(project="serl_gs", name=f"{run_dir.name}-{name}", dir=str(run_dir), config=config)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        scalars = {k: v for k, v in ((k, _scalar(v)) for k, v in metrics.items()) if v is not None}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        for key, value in scalars.items():
            self._tb.add_scalar(key, value, int(step))
        if self._wandb is not None:
            self._wandb.log(scalars, step=int(step))

    def close(self) -> None:
        self._jsonl.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def format_console(metrics: dict[str, Any], keys: list[str]) -> str:
    """One compact progress line with the chosen keys (the logger puts the node's name before it, serl_gs.logs)."""
    parts = []
    for key in keys:
        value = _scalar(metrics.get(key))
        if value is not None:
            parts.append(f"{key}={value:.4g}")
    return " ".join(parts)
