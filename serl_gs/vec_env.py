"""A gymnasium VectorEnv over a batch of one task: all envs step in one call, on MJX or on CPU MuJoCo.

Autoreset is gymnasium's same-step mode (`AutoresetMode.SAME_STEP`): when an env's episode ends in `step`,
the returned `obs` already holds the first observation of its next episode, and the true final observation
is in `infos["final_obs"]` (a dict shaped like obs, its rows valid where the mask `infos["_final_obs"]` [N]
is True). Off-policy learners need that final observation; see `serl_gs.data.records`.

Arrays stay on the JAX device by default (`array_backend="jax"`); `array_backend="numpy"` returns numpy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from serl_gs.mjx_env import MjxEnv, PhysicsState, State, Task, check_action

PhysicsPath = Literal["auto", "mjx", "mujoco"]
ArrayBackend = Literal["jax", "numpy"]
PHYSICS_PATHS = ("auto", "mjx", "mujoco")
ARRAY_BACKENDS = ("jax", "numpy")


@dataclasses.dataclass(frozen=True)
class VecEnvConfig:
    num_envs: int = 1
    physics: PhysicsPath = "auto"  # auto: MJX when JAX runs on a GPU, else CPU MuJoCo (faster there)
    array_backend: ArrayBackend = "jax"
    seed: int | None = None  # default seed of the first reset() without one

    def __post_init__(self):
        if not isinstance(self.num_envs, int) or self.num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {self.num_envs!r}")
        if self.physics not in PHYSICS_PATHS:
            raise ValueError(f"physics must be one of {PHYSICS_PATHS}, got {self.physics!r}")
        if self.array_backend not in ARRAY_BACKENDS:
            raise ValueError(f"array_backend must be one of {ARRAY_BACKENDS}, got {self.array_backend!r}")


def resolve_physics(physics: PhysicsPath) -> Literal["mjx", "mujoco"]:
    """`auto` picks MJX where JAX has a GPU and CPU MuJoCo otherwise (README, "Physics paths")."""
    if physics != "auto":
        return physics
    return "mjx" if jax.default_backend() == "gpu" else "mujoco"


def _where(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-env select over pytrees with a leading batch dim: new where mask [B] else old."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _reset_finished(start: Callable[[jax.Array], State], state: State) -> State:
    """Replaces finished envs (terminated or truncated) by fresh episodes drawn from their own rng."""
    done = jnp.logical_or(state.terminated, state.truncated)
    return jax.lax.cond(jnp.any(done), lambda s: _where(done, start(s.info["rng"]), s), lambda s: s, state)


@functools.lru_cache(maxsize=16)
def _mjx_programs(task: Task) -> tuple[Callable, Callable]:
    """Jitted (reset, step) of a task's MJX batch; cached so equal tasks compile once per process."""
    env = MjxEnv(task)
    reset = jax.vmap(env.reset)

    def step(state: State, action: jax.Array) -> tuple[State, State]:
        stepped = jax.vmap(env.step)(state, action)
        return _reset_finished(reset, stepped), stepped

    return jax.jit(reset), jax.jit(step)


@functools.lru_cache(maxsize=16)
def _cpu_programs(task: Task) -> tuple[Callable, Callable, Callable]:
    """Jitted (start, control, finish) around CPU MuJoCo physics; cached like `_mjx_programs`."""

    def start_one(rng: jax.Array) -> State:
        qpos, qvel, _, info, obs, metrics = task.start(rng)
        zero = jnp.zeros((), jnp.float32)
        return State(PhysicsState(qpos, qvel), obs, zero, zero > 0, zero > 0, metrics, info)

    start = jax.vmap(start_one)

    def finish(state: State, qpos: jax.Array, qvel: jax.Array, action: jax.Array) -> tuple[State, State]:
        obs, reward, term, trunc, metrics, info = jax.vmap(task.evaluate)(qpos, qvel, state.info, action)
        stepped = State(PhysicsState(qpos, qvel), obs, reward, term, trunc, metrics, info)
        return _reset_finished(start, stepped), stepped

    return jax.jit(start), jax.jit(jax.vmap(task.control)), jax.jit(finish)


class _MjxBatch:
    """All envs in one MJX program: one jitted call per step (physics, reward, autoreset)."""

    def __init__(self, task: Task, num_envs: int):
        self._reset, self._step = _mjx_programs(task)

    def reset(self, keys: jax.Array) -> State:
        return self._reset(keys)

    def step(self, state: State, action: jax.Array) -> tuple[State, State]:
        """(state after autoreset, state before it: holds the final obs of finished episodes)."""
        return self._step(state, action)

    def close(self) -> None:
        pass


class _CpuBatch:
    """CPU MuJoCo steps the physics; the task's pure JAX maths runs jitted before and after it."""

    def __init__(self, task: Task, num_envs: int):
        from serl_gs.cpu_physics import CpuBatchedPhysics

        self.physics = CpuBatchedPhysics(task.mj_model, num_envs, task.n_substeps)
        self._start, self._control, self._finish = _cpu_programs(task)

    def _load(self, env_ids: np.ndarray, state: State) -> None:
        qpos, qvel = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
        self.physics.set_state(env_ids, qpos[env_ids], qvel[env_ids])

    def reset(self, keys: jax.Array) -> State:
        state = self._start(keys)
        self._load(np.arange(self.physics.num_envs), state)
        return state

    def step(self, state: State, action: jax.Array) -> tuple[State, State]:
        ctrl, info = self._control(state.data.qpos, state.data.qvel, state.info, action)
        self.physics.step(np.asarray(ctrl))
        qpos = jnp.asarray(self.physics.qpos, jnp.float32)
        qvel = jnp.asarray(self.physics.qvel, jnp.float32)
        new, stepped = self._finish(state.replace(info=info), qpos, qvel, action)
        done = np.asarray(jnp.logical_or(stepped.terminated, stepped.truncated))
        if done.any():
            self._load(np.flatnonzero(done), new)
        return new, stepped

    def close(self) -> None:
        self.physics.close()


class SerlVectorEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one task stepped in one batch. Build through `gymnasium.make_vec`."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, task: Task, config: VecEnvConfig):
        self.task = task
        self.config = config
        self.num_envs = config.num_envs
        self.physics = resolve_physics(config.physics)
        self._batch = (_MjxBatch if self.physics == "mjx" else _CpuBatch)(task, config.num_envs)

        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (task.action_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        shapes = task.observation_shapes()
        self.single_observation_space = gym.spaces.Dict(
            {k: gym.spaces.Box(-np.inf, np.inf, s.shape, np.dtype(s.dtype)) for k, s in shapes.items()}
        )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._state: State | None = None
        self._default_seed = config.seed

    # ---- gymnasium API ----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed = (
                self._default_seed
                if self._default_seed is not None
                else int(np.random.SeedSequence().entropy % 2**31)
            )
            self._default_seed = None
        base = jax.random.PRNGKey(seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.num_envs))
        self._state = self._batch.reset(keys)
        return self._out(self._state.obs), self._infos(self._state, None)

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        check_action(actions, self.task.action_size, self.num_envs)
        actions = jnp.asarray(actions, jnp.float32)
        self._state, stepped = self._batch.step(self._state, actions)
        return (
            self._out(self._state.obs),
            self._out(stepped.reward),
            self._out(stepped.terminated),
            self._out(stepped.truncated),
            self._infos(self._state, stepped),
        )

    def close(self, **kwargs) -> None:
        self._batch.close()

    # ---- helpers ----------------------------------------------------------------------------------------
    @property
    def state(self) -> State | None:
        """The batched env state (after autoreset); for tests and tools."""
        return self._state

    def _out(self, tree):
        return jax.tree.map(np.asarray, tree) if self.config.array_backend == "numpy" else tree

    def _infos(self, state: State, stepped: State | None) -> dict[str, Any]:
        if stepped is None:
            return {}
        done = jnp.logical_or(stepped.terminated, stepped.truncated)
        infos: dict[str, Any] = {"final_obs": stepped.obs, "_final_obs": done, **stepped.metrics}
        infos["episode_step"] = stepped.info["step"]
        return self._out(infos)
