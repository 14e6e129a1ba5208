"""How often the Panda ladder's registered scripted experts solve their tasks: whole episodes from seeded resets
on CPU MuJoCo, success counted at each episode's last step (as the actor and eval count it).

    python -m benchmarks.ladder_solvers                          # ~1 min per (task, seed) on a loaded 2-core CPU
    python -m benchmarks.ladder_solvers --envs serl_gs/PandaStackCube-v0 --seeds 5 7 --num_envs 32

One JSON line per (task, seed): the success rate (baseline: the 0.8 the tests require), and one per task
pooled over the seeds. The experts see the pixel policy's observation and read the cube and goal from the
simulator's state (envs/experts.py).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the serl_gs/ ids and their experts)
from benchmarks._report import emit, log
from serl_gs.demos.experts import expert_for

REQUIRED = 0.8  # tests/test_envs_panda_ladder.py, tests/test_envs_panda_peg.py


def expert_successes(env_id: str, seed: int, num_envs: int) -> np.ndarray:
    vec = gym.make_vec(env_id, num_envs=num_envs, physics="mujoco", array_backend="numpy", cube_in_state=False)
    expert = expert_for(env_id)
    obs, _ = vec.reset(seed=seed)
    for _ in range(vec.task.episode_length):
        obs, _, _, truncated, infos = vec.step(expert(vec, obs))
    vec.close()
    if not truncated.all():
        raise RuntimeError(f"{env_id}: an episode did not end at the time limit")
    return np.asarray(infos["success"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--envs", nargs="+",
        default=["serl_gs/PandaPlaceCube-v0", "serl_gs/PandaStackCube-v0", "serl_gs/PandaPegInsertion-v0"],
    )  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[5, 7, 11, 13])
    parser.add_argument("--num_envs", type=int, default=32)
    args = parser.parse_args()
    for env_id in args.envs:
        pooled = []
        for seed in args.seeds:
            success = expert_successes(env_id, seed, args.num_envs)
            pooled.append(success)
            log(f"{env_id} seed {seed}: {int(success.sum())}/{success.size}")
            config = {"env": env_id, "seed": seed, "episodes": int(success.size), "successes": int(success.sum())}
            emit("ladder_solvers", "expert_success_rate", success.mean(), "fraction", config=config, quick=False,
                 baseline="required", baseline_value=REQUIRED)  # fmt: skip
        pooled = np.concatenate(pooled)
        config = {"env": env_id, "seeds": args.seeds, "episodes": int(pooled.size), "successes": int(pooled.sum())}
        emit("ladder_solvers", "expert_success_rate_pooled", pooled.mean(), "fraction", config=config, quick=False,
             baseline="required", baseline_value=REQUIRED)  # fmt: skip


if __name__ == "__main__":
    main()
