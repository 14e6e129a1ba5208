"""How closely MJX-Warp follows MuJoCo C on PandaPegInsertion with the peg held, step by step: the same random
sign actions (gripper closed) from the same reset, at two action scales; the largest |state - MuJoCo C's state|
per control step (the state with the peg's and the hole's positions), and how far the peg has slid from its
grip point between the pads in MuJoCo C (mm; 0 while it sticks).

    python -m benchmarks.peg_agreement            # ~1 min on an idle 2-core CPU (one Warp compile per scale)

One JSON line per (scale, step), the gap in micro-units (200 = the test's 2e-4); tests/test_envs_panda_peg.py
asserts 2e-4 over the rollout it covers.
"""

from __future__ import annotations

import argparse

import numpy as np

import envs  # noqa: F401  (registers the serl_gs/ ids)
from benchmarks._report import emit, log
from benchmarks.physics_agreement import state_trajectory
from envs.panda_peg_insertion import GRIP_OFFSET

ENV_ID = "serl_gs/PandaPegInsertion-v0"


def held_peg_actions(scale: float, steps: int, num_envs: int, seed: int = 1) -> np.ndarray:
    """Random full-or-scaled sign moves of the hand with the gripper closed (tests/test_envs_panda_peg.py's)."""
    arm = np.sign(np.random.default_rng(seed).uniform(-1, 1, (steps, num_envs, 3))) * scale
    return np.concatenate([arm, np.ones((steps, num_envs, 1))], axis=-1).astype(np.float32)


def trajectory(actions: np.ndarray, **kwargs) -> np.ndarray:
    return state_trajectory(ENV_ID, actions, cube_in_state=True, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 0.3])
    parser.add_argument("--steps", type=int, default=12, help="control steps")
    parser.add_argument("--num_envs", type=int, default=2)
    args = parser.parse_args()
    for scale in args.scales:
        if not 0 < scale <= 1:
            raise ValueError(f"--scales must lie in (0, 1], got {scale}")
        actions = held_peg_actions(scale, args.steps, args.num_envs)
        warp = trajectory(actions, physics="mjx", mjx_impl="warp")
        cpu = trajectory(actions, physics="mujoco")
        slid = np.linalg.norm(cpu[:, :, 7:10] - cpu[:, :, :3] + [0.0, 0.0, GRIP_OFFSET], axis=-1).max(axis=1)
        for t in range(1, args.steps + 1):
            gap = float(np.abs(warp[t] - cpu[t]).max())
            log(f"scale {scale} step {t}: max |warp - C| {gap:.2e}, peg slid {1e3 * slid[t]:.1f} mm")
            config = {"env": ENV_ID, "action_scale": scale, "step": t, "num_envs": args.num_envs,
                      "peg_slid_mm": round(1e3 * float(slid[t]), 2)}  # fmt: skip
            # In micro-units: the report keeps 4 decimals, and the gaps of interest are 1e-7 to 1e-3.
            emit("peg_agreement", "max_abs_state_gap", 1e6 * gap, "micro state units (um, um/s)", config=config,
                 quick=False, baseline="test_tolerance", baseline_value=200.0)  # fmt: skip


if __name__ == "__main__":
    main()
