#!/usr/bin/env bash
# The command of place-agreement-cpu2-2026-12-07.jsonl: tests/test_envs_panda_ladder.py's stack agreement check
# (8 full-scale sign actions, 2 envs, MJX-Warp against MuJoCo C, benchmarks.physics_agreement.state_trajectory)
# run on PandaPlaceCube-v0, which the suite leaves out for time (each model's Warp compile costs ~30 s on a CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python - <<'PY'
import json
import numpy as np
import envs  # noqa: F401
from benchmarks.physics_agreement import state_trajectory
env_id = "serl_gs/PandaPlaceCube-v0"
actions = np.sign(np.random.default_rng(1).uniform(-1, 1, (8, 2, 4))).astype(np.float32)
warp = state_trajectory(env_id, actions, physics="mjx", mjx_impl="warp")
cpu = state_trajectory(env_id, actions, physics="mujoco")
gap = np.abs(warp - cpu).max(axis=(1, 2))
print(json.dumps({"figure": "physics_agreement", "task": env_id, "steps": len(actions), "tolerance": 2e-4,
                  "max_abs_gap_per_step_micro": [round(float(g) * 1e6, 2) for g in gap],
                  "within_tolerance": bool(gap.max() <= 2e-4),
                  "arm_moved_m": round(float(np.abs(cpu[-1, :, :3] - cpu[0, :, :3]).max()), 4)}))
PY
