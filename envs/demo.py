"""A short batched rollout: the scripted pick on PandaPickCube-v0, printing success and throughput.

    python -m envs.demo --num_envs 64 --episodes 2 --physics auto

No learning involved: it shows that the task is solvable and how fast a batch of envs steps on this machine
(the README's main job, `./run_demo.sh`, trains a policy instead).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import jax
import numpy as np

import envs  # noqa: F401  (registers the tasks)
from envs.panda_pick_cube import scripted_action


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=2, help="episodes per env")
    parser.add_argument("--physics", default="auto", choices=["auto", "mjx", "mujoco"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=args.num_envs, physics=args.physics)
    print(f"PandaPickCube-v0: {args.num_envs} envs, physics={vec.physics}, JAX on {jax.default_backend()}")
    policy = jax.jit(jax.vmap(scripted_action))
    obs, _ = vec.reset(seed=args.seed)
    obs, *_ = vec.step(policy(obs["state"], vec.state.info["step"]))  # compile outside the timing
    vec.reset(seed=args.seed)
    successes, steps, start = [], 0, time.perf_counter()
    episode_success = np.zeros(args.num_envs)
    while len(successes) < args.episodes * args.num_envs:
        obs, _, terminated, truncated, infos = vec.step(policy(obs["state"], vec.state.info["step"]))
        steps += args.num_envs
        episode_success = np.maximum(episode_success, np.asarray(infos["success"]))
        done = np.asarray(terminated | truncated)
        successes.extend(episode_success[done].tolist())
        episode_success[done] = 0.0
    elapsed = time.perf_counter() - start
    print(f"scripted pick: success {np.mean(successes):.1%} over {len(successes)} episodes")
    print(f"throughput: {steps / elapsed:,.0f} env steps/s ({steps} steps in {elapsed:.1f} s)")
    vec.close()


if __name__ == "__main__":
    main()
