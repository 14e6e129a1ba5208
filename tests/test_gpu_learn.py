"""The one short GPU run that learns (scripts/gpu_learn.sh -> benchmarks.gpu_learn): its dry run does what the GPU
run does at tiny sizes on this CPU, through the same shell entry point: learner and actor processes, then the
eval with the video of the policy's frames, and the files the GPU run brings back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_learn import FILES, Plan

ROOT = Path(__file__).resolve().parents[1]


def _free_port_block() -> int:
    """A port whose next two are free as well (the learner takes three)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 2 < 65536 and all(_free(port + i) for i in (1, 2)):
            return port
    raise AssertionError("no three consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow  # minutes: MJX-Warp's Panda and pixel DrQ compile in three processes
def test_dry_run_trains_then_evaluates_and_writes_every_file(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "SERL_GS_USE_BUNDLE": "0"}
    args = ["bash", "scripts/gpu_learn.sh", str(out), "--dry-run", "--port", str(_free_port_block()),
            "--run_dir", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    logs = "".join(f"\n--- {p.name}:\n" + p.read_text()[-1500:] for p in sorted(out.glob("*.log")))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and summary["ok"] and set(summary["steps"]) == {"train", "eval"}, summary
    train = summary["steps"]["train"]
    assert train["learner_exit"] == 0 and "--max_updates 4" in train["ended"] and "at 4 updates" in train["ended"]
    assert summary["eval"]["episodes"] == 2 and "return_mean" in summary["eval"] and "success_rate" in summary["eval"]
    assert summary["versions"]["jax"] and summary["versions"]["torch"]
    assert set(FILES) - {"gsplat_build.log"} <= {p.name for p in out.iterdir()}  # no gsplat build on a CPU
    assert (out / "eval.mp4").stat().st_size > 0
    points = json.loads((out / "curve.json").read_text())
    assert points and 0 < points[-1]["updates"] <= 4 and points[-1]["wall_s"] >= points[0]["wall_s"]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["gpu_learn"] == "done" and last["ok"]
    # Each `auto` choice once per node (docs/gpu.md).
    learner = (out / "learner.log").read_text()
    for line in ("[learner] JAX's backend is cpu", "[learner] updates per call: 1 (", "[learner] scan unroll: "):
        assert learner.count(line) == 1, line
    actor, evaluation = (out / "actor.log").read_text(), (out / "eval.log").read_text()
    for line in ("physics: mjx (requested)", "MJX implementation: warp (auto:", "render backend: reference ("):
        assert actor.count(line) == 1, line
    for line in ("physics: mujoco (requested)", "render backend: reference ("):  # the dry run's eval: CPU MuJoCo
        assert evaluation.count(line) == 1, line


def test_the_gpu_plan_is_the_issue_s_run():
    from serl_gs.nodes.presets import preset

    plan = Plan.for_run(dry_run=False)
    run = preset(plan.preset)
    actor, learner = run.actor, run.learner
    assert actor.num_envs >= 1024 and (actor.env.physics, actor.env.render_backend) == ("mjx", "gsplat")
    assert learner.stop_success == 0.9 and learner.env.cameras == actor.env.cameras == ("front", "wrist")
    assert not plan.learner_overrides and not plan.actor_overrides
    assert "--policy_frames" in plan.eval_args(Path("r"), Path("o"))


def test_gpu_learn_script_says_how_to_call_it():
    proc = subprocess.run(["bash", "scripts/gpu_learn.sh"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "usage:" in proc.stderr
