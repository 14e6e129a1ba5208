"""benchmarks.learning_curve: the committed learning results are read from a run directory as documented."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.learning_curve import learning_curve


def _write_run(run_dir, start: float) -> None:
    run_dir.mkdir()
    (run_dir / "learner_config.json").write_text(json.dumps({"env": "x"}))
    os.utime(run_dir / "learner_config.json", (start, start))
    rows = [
        {"step": 0, "time": start + 5, "updates": 0},  # no finished episode yet: not a curve point
        {"step": 1000, "time": start + 60, "updates": 1000, "episode_return": 120.0, "success": 0.0},
        {"step": 2000, "time": start + 120, "updates": 2000, "episode_return": 640.0, "success": 0.5},
    ]
    (run_dir / "learner_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step, ret, written in ((2000, 700.0, start + 118), (1000, 150.0, start + 59)):
        (run_dir / "checkpoints" / str(step)).mkdir(parents=True)
        os.utime(run_dir / "checkpoints" / str(step), (written, written))
        (run_dir / "eval" / str(step)).mkdir(parents=True)
        summary = {"step": step, "episodes": 10, "return_mean": ret, "return_std": 1.0}
        (run_dir / "eval" / str(step) / "summary.json").write_text(json.dumps(summary))


def test_curve_newest_eval_and_every_evaluated_checkpoint_in_update_order(tmp_path):
    start = 1_700_000_000.0
    _write_run(tmp_path / "run", start)
    result = learning_curve(tmp_path / "run")
    assert [p["wall_s"] for p in result["training_curve"]] == [60.0, 120.0]
    assert result["first_success"]["updates"] == 2000
    assert result["eval"]["return_mean"] == 700.0, "the newest eval is the highest checkpoint step"
    assert result["eval_curve"] == [
        {"updates": 1000, "wall_s": 59.0, "return_mean": 150.0, "return_std": 1.0, "episodes": 10},
        {"updates": 2000, "wall_s": 118.0, "return_mean": 700.0, "return_std": 1.0, "episodes": 10},
    ]


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="learner_metrics.jsonl"):
        learning_curve(tmp_path)
