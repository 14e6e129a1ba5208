"""A learning result from a run directory: success and return against wall-clock, plus the final eval.

    TRAIN_SECONDS=2400 RUN_DIR=runs/pick ./run_demo.sh
    python -m benchmarks.learning_curve runs/pick --command "TRAIN_SECONDS=2400 RUN_DIR=runs/pick ./run_demo.sh" \
        > benchmarks/results/learning-panda-state-cpu2-<date>.json

Reads the learner's metric rows (`learner_metrics.jsonl`: what the actors reported of their finished episodes,
averaged over each logging interval) and the newest eval summary (`eval/<step>/summary.json`, written by
run_eval.sh), and every evaluated checkpoint as `eval_curve`. Wall-clock counts from the learner's start (when it
wrote `learner_config.json`), so it includes compilation, the actors' random steps and `training_starts`. Prints one
JSON document.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks._report import device_name
from serl_gs.nodes.metrics_log import read_metrics

CURVE_KEYS = ("updates", "transitions", "updates_per_s", "episode_return", "success", "eval_return", "eval_success")


def _eval_summaries(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("eval/*/summary.json"), key=lambda p: int(p.parent.name))


def _newest_eval(run_dir: Path) -> dict[str, Any] | None:
    summaries = _eval_summaries(run_dir)
    return json.loads(summaries[-1].read_text()) if summaries else None


def eval_curve(run_dir: Path, start: float) -> list[dict[str, Any]]:
    """Every evaluated checkpoint (run_eval.sh --checkpoint RUN/checkpoints/STEP), against the wall-clock at which
    the learner wrote it (the checkpoint folder's time)."""
    points = []
    for path in _eval_summaries(run_dir):
        summary = json.loads(path.read_text())
        checkpoint = run_dir / "checkpoints" / path.parent.name
        wall_s = round(checkpoint.stat().st_mtime - start, 1) if checkpoint.exists() else None
        keep = ("return_mean", "return_std", "success_rate", "episodes")
        kept = {k: summary[k] for k in keep if k in summary}
        points.append({"updates": int(path.parent.name), "wall_s": wall_s, **kept})
    return points


def learning_curve(run_dir: Path) -> dict[str, Any]:
    metrics = run_dir / "learner_metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{str(metrics)!r} does not exist: is this a learner's run directory?")
    rows = read_metrics(metrics)
    start = (run_dir / "learner_config.json").stat().st_mtime
    curve = [
        {"wall_s": round(row["time"] - start, 1), **{k: row[k] for k in CURVE_KEYS if k in row}}
        for row in rows
        if "episode_return" in row
    ]
    first_success = next((point for point in curve if point.get("success", 0.0) > 0.0), None)
    return {
        "run_dir": str(run_dir),
        "config": json.loads((run_dir / "learner_config.json").read_text()),
        "device": device_name(),
        "first_success": first_success,  # the first logging interval in which an episode succeeded
        "eval": _newest_eval(run_dir),
        "eval_curve": eval_curve(run_dir, start),
        "training_curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the learner's --run_dir")
    parser.add_argument("--command", default=None, help="the command that made the run, kept with the result")
    args = parser.parse_args()
    result = learning_curve(args.run_dir)
    if args.command:
        result = {"command": args.command, **result}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
