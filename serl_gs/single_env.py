"""One env as a plain `gymnasium.Env` (numpy in, numpy out), for tools that expect `gymnasium.make`.

It is a batch of one; at an episode's end it returns the true final observation and expects `reset()`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from serl_gs.vec_env import SerlVectorEnv


class SingleEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, vec_env: SerlVectorEnv):
        if vec_env.num_envs != 1 or vec_env.config.array_backend != "numpy":
            raise ValueError(
                f"SingleEnv wraps a numpy vector env of one env, got num_envs={vec_env.num_envs}, "
                f"array_backend={vec_env.config.array_backend!r}"
            )
        self.vec_env = vec_env
        self.action_space = vec_env.single_action_space
        self.observation_space = vec_env.single_observation_space
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        obs, _ = self.vec_env.reset(seed=seed)
        self._done = False
        return _first(obs), {}

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode has ended: call reset() before step()")
        obs, reward, terminated, truncated, infos = self.vec_env.step(np.asarray(action, np.float32)[None])
        self._done = bool(terminated[0] or truncated[0])
        if self._done:
            obs = infos["final_obs"]
        info = {k: v[0] for k, v in infos.items() if not k.startswith("_") and k != "final_obs"}
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self):
        self.vec_env.close()


def _first(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in obs.items()}
