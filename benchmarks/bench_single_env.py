"""One `gymnasium.make` env (CPU MuJoCo, numpy in and out), as SB3 and other single-env trainers step it: steps/s
of this checkout against another checkout's (e.g. before a change), in the same run, alternating A B A B so a
shared machine's load falls on both.

    python -m benchmarks.bench_single_env --baseline_root /work/main --quick

Each side runs in a fresh Python with its checkout first on PYTHONPATH; the best of the rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import emit, log

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import json, sys, time
import gymnasium as gym, numpy as np
import envs  # noqa: F401  (both checkouts register the serl_gs/ ids with it)
env_id, steps = sys.argv[1], int(sys.argv[2])
env = gym.make(env_id, physics="mujoco")
env.reset(seed=0)
rng = np.random.default_rng(0)
actions = rng.uniform(-1, 1, (64, *env.action_space.shape)).astype(np.float32)
for i in range(20):  # warm-up: compilation
    env.step(actions[i % 64])
start = time.perf_counter()
for i in range(steps):
    *_, terminated, truncated, _ = env.step(actions[i % 64])
    if terminated or truncated:
        env.reset()
print(json.dumps({"steps_per_s": steps / (time.perf_counter() - start)}))
"""


def _rate(root: Path, env_id: str, steps: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, env_id, str(steps)], capture_output=True, text=True, env=env, cwd=root
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker in {root} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline_root", required=True, help="the other checkout (e.g. before the change)")
    parser.add_argument("--tasks", default="serl_gs/CartpoleBalance-v0,serl_gs/PandaPickCube-v0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1000 steps")
    args = parser.parse_args()
    rounds, steps = (2, 1000) if args.quick else (args.rounds, args.steps)
    baseline_root = Path(args.baseline_root).resolve()
    rev = lambda root: subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for env_id in args.tasks.split(","):
        ours, theirs = [], []
        for r in range(rounds):
            t = time.perf_counter()
            theirs.append(_rate(baseline_root, env_id, steps))
            ours.append(_rate(ROOT, env_id, steps))
            took = time.perf_counter() - t
            log(f"{env_id} round {r}: baseline {theirs[-1]:.0f}, ours {ours[-1]:.0f} steps/s ({took:.0f} s)")
        emit(
            "single_env", "steps_per_s", max(ours), "1/s",
            config={"env": env_id, "physics": "mujoco", "steps": steps, "rounds": rounds, "ours_rev": rev(ROOT),
                    "baseline_rev": rev(baseline_root), "all_ours": [round(x) for x in ours],
                    "all_baseline": [round(x) for x in theirs], "machine": "shared, loaded by other jobs"},
            quick=args.quick, baseline=f"checkout {baseline_root}", baseline_value=max(theirs),
        )  # fmt: skip


if __name__ == "__main__":
    main()
