"""One env as a plain `gymnasium.Env` (numpy in, numpy out), for tools that expect `gymnasium.make`.

It is a batch of one; at an episode's end it returns the true final observation and expects `reset()`.
With `render_mode="rgb_array"`, `render()` draws the state last returned (the final frame at an episode's
end, not the next episode's first), so gymnasium's RecordVideo records whole episodes.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from serl_gs.vec_env import RENDER_MODES, SerlVectorEnv


class SingleEnv(gym.Env):
    metadata = {"render_modes": list(RENDER_MODES)}

    def __init__(self, vec_env: SerlVectorEnv):
        if vec_env.num_envs != 1 or vec_env.config.array_backend != "numpy":
            raise ValueError(
                f"SingleEnv wraps a numpy vector env of one env, got num_envs={vec_env.num_envs}, "
                f"array_backend={vec_env.config.array_backend!r}"
            )
        self.vec_env = vec_env
        self.action_space = vec_env.single_action_space
        self.observation_space = vec_env.single_observation_space
        self.render_mode = vec_env.render_mode
        self.metadata = {**self.metadata, "render_fps": vec_env.metadata["render_fps"]}
        self._done = True
        self._shown_obs: dict[str, np.ndarray] = {}  # the batch of one last returned (final obs at the end)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        obs, _ = self.vec_env.reset(seed=seed)
        self._done = False
        self._shown_obs = obs
        return _first(obs), {}

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode has ended: call reset() before step()")
        obs, reward, terminated, truncated, infos = self.vec_env.step(np.asarray(action, np.float32)[None])
        self._done = bool(terminated[0] or truncated[0])
        if self._done:
            obs = infos["final_obs"]
        self._shown_obs = obs
        info = {k: v[0] for k, v in infos.items() if not k.startswith("_") and k != "final_obs"}
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self):
        """uint8 [H, W, 3] frame of the state last returned, with `render_mode="rgb_array"`."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; make the env with render_mode='rgb_array'")
            return None
        if self.vec_env.state is None:
            raise RuntimeError("call reset() before render()")
        # At an episode's end the batch inside has already moved on to the next episode: draw the final state.
        return self.vec_env.render_frames(self.vec_env.frame_poses(final=self._done), self._shown_obs)[0]

    def get_state(self) -> bytes:
        """Pickle-free bytes of this env's state (serl_gs.env_state), including whether its episode has ended."""
        from serl_gs.env_state import decode, encode

        meta, arrays = decode(self.vec_env.get_state())
        return encode({**meta, "single_done": self._done}, arrays)

    def set_state(self, state: bytes) -> None:
        """Restores `get_state`'s bytes: the next step continues bit-identically."""
        from serl_gs.env_state import decode

        meta, _ = decode(state)
        self.vec_env.set_state(state)
        self._done = bool(meta.get("single_done", False))
        self._shown_obs = {k: np.asarray(v) for k, v in self.vec_env._obs.items()}

    def close(self):
        self.vec_env.close()


def _first(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in obs.items()}


# ---- fork -------------------------------------------------------------------------------------------------
# JAX runs threads; a process forked while its backend is up inherits their locks mid-use and deadlocks on
# its first JAX call (gymnasium's AsyncVectorEnv forks by default on Linux, after building one env in the
# parent). A fork hook marks such children so the env refuses to run there, with a message, instead of hanging.
FORK_MESSAGE = (
    "this process was forked from one where JAX was running, and JAX deadlocks after fork: start the workers "
    "with spawn, e.g. gymnasium.make_vec(env_id, num_envs, vectorization_mode='async', "
    "vector_kwargs={'context': 'spawn'}) or AsyncVectorEnv(env_fns, context='spawn')"
)
_forked_from_jax = False


def _jax_backend_running() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    backends = getattr(bridge, "_backends", None)  # read without JAX's lock: it may be held by a dead thread
    return bool(backends) if isinstance(backends, dict) else True  # unknown JAX internals: assume running


def _mark_fork_child() -> None:
    global _forked_from_jax
    _forked_from_jax = _forked_from_jax or _jax_backend_running()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_fork_child)


def forked_from_jax() -> bool:
    """True in a process forked (at any depth) from one whose JAX backend was running."""
    return _forked_from_jax


class ForkRefusedEnv(gym.Env):
    """What the entry point returns in a process forked from JAX: building the real env there would hang on its
    first JAX call, so this one raises FORK_MESSAGE on reset/step, where gymnasium's AsyncVectorEnv passes the
    error to the parent. It has the spaces the same env had in the parent (they pass the parent's check)."""

    metadata = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        raise RuntimeError(FORK_MESSAGE)

    def step(self, action):
        raise RuntimeError(FORK_MESSAGE)
