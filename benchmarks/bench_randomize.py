"""Cost of domain randomization (serl_gs.randomize) in env steps/s: the same pixel vector env with and without
a preset, measured side by side in one run.

    python -m benchmarks.bench_randomize                 # PandaPickCube, 64 envs, 64 px, MuJoCo C, reference
    python -m benchmarks.bench_randomize --quick         # cartpole, 16 envs, 32 px: under a minute on 2 cores

The two envs step in alternating rounds (none, preset, none, preset, ...), so load from other processes on a
shared machine falls on both alike; each figure is total env steps over total time of its rounds. A second line
gives the median over rounds of (preset rate / none rate) within each round, with every round's ratio and the
load average in its config: on a loaded machine the median of interleaved rounds is the figure to quote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym
import jax
import numpy as np

import envs  # noqa: F401  (registers the tasks)
from benchmarks._report import emit, log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--env", default=None)
    p.add_argument("--num_envs", type=int, default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--physics", default="mujoco")
    p.add_argument("--render_backend", default="reference")
    p.add_argument("--presets", default="light,strong")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="env steps per round")
    a = p.parse_args()
    env_id = a.env or ("serl_gs/CartpoleBalance-v0" if a.quick else "serl_gs/PandaPickCube-v0")
    num_envs = a.num_envs or (16 if a.quick else 64)
    size = a.image_size or (32 if a.quick else 64)
    kw = dict(num_envs=num_envs, physics=a.physics, obs_mode="pixels", render_backend=a.render_backend,
              image_size=size)  # fmt: skip
    for preset in a.presets.split(","):
        vecs = {name: gym.make_vec(env_id, randomize=name, **kw) for name in ("none", preset)}
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (8, *vecs["none"].action_space.shape)).astype(np.float32)
        spent = {name: 0.0 for name in vecs}
        rounds: list[dict[str, float]] = []
        for vec in vecs.values():  # warm-up: compilation, scene generation, first draws
            vec.reset(seed=0)
            vec.step(actions[0])
        for r in range(a.rounds):
            rounds.append({})
            for name, vec in vecs.items():
                start = time.perf_counter()
                for i in range(a.steps):
                    obs, *_ = vec.step(actions[(r * a.steps + i) % len(actions)])
                jax.block_until_ready(obs)
                rounds[-1][name] = time.perf_counter() - start
                spent[name] += rounds[-1][name]
            done = (r + 1) * a.steps * num_envs
            log(f"round {r}: " + ", ".join(f"{n} {done / max(t, 1e-9):.1f} steps/s" for n, t in spent.items()))
        rates = {name: a.rounds * a.steps * num_envs / t for name, t in spent.items()}
        config = dict(env=env_id, preset=preset, num_envs=num_envs, image_size=size, physics=a.physics,
                      render_backend=a.render_backend, rounds=a.rounds, steps_per_round=a.steps)  # fmt: skip
        emit("randomize", "env_steps_per_s", rates[preset], "1/s", config=config, quick=a.quick,
             baseline="randomize_none", baseline_value=rates["none"])  # fmt: skip
        ratios = [t["none"] / t[preset] for t in rounds]  # rate ratio = inverse time ratio, same steps per round
        emit("randomize", "env_steps_per_s_ratio_median", statistics.median(ratios), "ratio", quick=a.quick,
             config={**config, "round_ratios": [round(x, 4) for x in ratios], "load_average": os.getloadavg()})
        for vec in vecs.values():
            vec.close()


if __name__ == "__main__":
    main()
