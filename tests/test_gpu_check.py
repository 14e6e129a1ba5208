"""The GPU ledger's one script (scripts/gpu_check.sh -> benchmarks.gpu_check): its dry run does every step a
GPU run does, at tiny sizes on this CPU, through the same shell entry point, and writes well-formed JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_env import baseline_size, parse_cases
from benchmarks.gpu_check import faster_impl

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"env_warp", "env_jax", "learner", "learner_levers", "render", "pixel_env"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line must be JSON


@pytest.mark.slow
def test_dry_run_does_every_step_and_writes_json_lines(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "SERL_GS_USE_BUNDLE": "0"}
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "run", str(tmp_path / "out"), "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and set(summary["steps"]) == STEPS
    assert all(step["ok"] for step in summary["steps"].values()), summary
    env_rows = _rows(out / "env.jsonl")
    assert {(r["config"]["task"], r["config"]["mjx_impl"]) for r in env_rows} == {
        ("PandaPickCube-v0", "warp"),
        ("CartpoleBalance-v0", "jax"),
    }
    assert all(r["metric"] == "env_steps_per_s" and r["value"] > 0 and r["baseline_value"] > 0 for r in env_rows)
    pixel_rows = _rows(out / "pixel_env.jsonl")
    assert pixel_rows and all(r["config"]["obs_mode"] == "pixels" and r["value"] > 0 for r in pixel_rows)
    learner = {r["metric"] for r in _rows(out / "learner.jsonl")}
    assert {"updates_per_s", "learner_steps_per_s", "critic_samples_per_s"} <= learner
    levers = {r["config"]["lever"] for r in _rows(out / "learner.jsonl") if "lever" in r["config"]}
    assert levers == {"today", "bf16"}
    render_rows = _rows(out / "render_checks.jsonl")
    assert render_rows and not [r for r in render_rows if r.get("ok") is False]
    assert "dry run" in (out / "gpu_check.log").read_text()


def test_faster_impl_reads_the_largest_size_both_reached(tmp_path):
    def row(impl, n, value, task="PandaPickCube-v0"):
        return json.dumps({"value": value, "config": {"task": task, "mjx_impl": impl, "num_envs": n}})

    path = tmp_path / "env.jsonl"
    assert faster_impl(path) == "warp", "nothing measured: warp"
    path.write_text(row("warp", 2, 5.0) + "\n" + row("jax", 2, 9.0, task="CartpoleBalance-v0") + "\n")
    assert faster_impl(path) == "warp", "another task's figure decides nothing"
    path.write_text("\n".join([row("warp", 1024, 5.0), row("jax", 1024, 9.0), row("warp", 4096, 20.0)]) + "\n")
    assert faster_impl(path) == "jax", "4096 has no jax figure: 1024 decides"
    path.write_text(path.read_text() + row("jax", 4096, 10.0) + "\n")
    assert faster_impl(path) == "warp"


def test_bench_env_cases_are_checked():
    want = {"A": [("mujoco", "auto"), ("mjx", "warp")], "B": [("mjx", "auto")]}
    assert parse_cases("A:mujoco,A:mjx:warp,B:mjx") == want
    with pytest.raises(ValueError, match="bad case 'A:mjx:cuda'"):
        parse_cases("A:mjx:cuda")


def test_bench_env_baseline_max_envs_0_means_no_baseline():
    assert baseline_size(1024, 256) == 256 and baseline_size(16, 256) == 16
    assert baseline_size(16, 0) is None  # `--baseline_max_envs 0` once failed with an IndexError
    with pytest.raises(ValueError, match="got -1"):
        baseline_size(16, -1)


def test_gpu_check_script_says_how_to_call_it():
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_kernel_printf_in_a_results_file_moves_to_the_log(tmp_path):
    # On the H200, MuJoCo Warp's CUDA printf ("solver iterations limit reached") landed between bench_env's JSON lines.
    from benchmarks.gpu_check import Runner

    runner = Runner(tmp_path, budget_s=60)
    warning = "solver iterations limit reached - please increase iterations beyond 6"
    row = json.dumps({"bench": "env", "value": 1.0})
    (tmp_path / "env.jsonl").write_text(f"{warning}\n{row}\n{warning}\n{row}\n")
    runner._keep_json_lines(tmp_path / "env.jsonl")
    runner.finish({})
    assert (tmp_path / "env.jsonl").read_text() == f"{row}\n{row}\n"
    assert (tmp_path / "gpu_check.log").read_text().count(warning) == 2
