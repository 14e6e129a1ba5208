"""The env contract: a `Task` (pure JAX maths of one task) and `MjxEnv` (pure reset/step over one `State`).

A task never reads simulator internals beyond joint positions and velocities (`qpos`, `qvel`): its controller,
observation, reward and reset are pure functions of those, of its own `info`, and of the action. That keeps
the same task code valid on both physics paths:

- MJX (`MjxEnv`): `reset(rng) -> State` and `step(state, action) -> State` are pure, jittable and vmappable;
  the whole step (control, physics substeps, observation, reward) is one traced function.
- CPU MuJoCo (`serl_gs.cpu_physics`): the same `Task.control` and `Task.evaluate` run jitted around a
  batched MuJoCo C step, for CPU users for whom MJX is too slow (see README, "Physics paths").

Time limits and auto-reset are not part of a task: `MjxEnv` counts steps and sets `truncated`; the vector
env (`serl_gs.vec_env`) resets finished episodes.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

Obs = dict[str, jax.Array]
Info = dict[str, jax.Array]


@flax.struct.dataclass
class State:
    """One env's state (add a leading batch dim when vmapped)."""

    data: Any  # physics state: mjx.Data on the MJX path, PhysicsState on the CPU path
    obs: Obs  # {"state": float32 [d], ...}
    reward: jax.Array  # float32 []
    terminated: jax.Array  # bool []: the task ended (no bootstrapping through it)
    truncated: jax.Array  # bool []: the time limit ended the episode (bootstrap through it)
    metrics: dict[str, jax.Array]  # float32 [] each: reward terms, "success"
    info: Info  # "rng", "step" and the task's own entries


@flax.struct.dataclass
class PhysicsState:
    """The part of the simulator state a task reads: joint positions and velocities."""

    qpos: jax.Array  # [nq]
    qvel: jax.Array  # [nv]


class Task(abc.ABC):
    """The maths of one task: MJCF, episode start, action -> control, observation, reward.

    Subclasses set `config`, `mj_model`, `n_substeps` (physics steps per control step), `episode_length`
    (control steps) and `action_size` in `__init__`, and implement the four pure methods below (unbatched).
    """

    config: Any  # a frozen dataclass: tasks with equal type and config are interchangeable
    mj_model: mujoco.MjModel
    n_substeps: int
    episode_length: int
    action_size: int

    # Equal tasks share compiled programs (see serl_gs.vec_env), so a process builds each program once.
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config == self.config

    def __hash__(self) -> int:
        return hash((type(self), self.config))

    @abc.abstractmethod
    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        """Start of an episode: (qpos [nq], qvel [nv], ctrl [nu], info)."""

    @abc.abstractmethod
    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        """Action [A] in [-1, 1] -> actuator controls [nu] held for `n_substeps` physics steps, new info."""

    @abc.abstractmethod
    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        """State observation: {"state": float32 [d]}. Pixels are added by the render stage."""

    @abc.abstractmethod
    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """After a step: (reward float32 [], terminated bool [], metrics {name: float32 []})."""

    # ---- derived, shared by both physics paths -------------------------------------------------------------
    def start(
        self, rng: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, Info, Obs, dict[str, jax.Array]]:
        """`init` plus the bookkeeping every env needs: its rng, a step counter, zeroed metrics."""
        rng, init_rng = jax.random.split(rng)
        qpos, qvel, ctrl, info = self.init(init_rng)
        info = {**info, "rng": rng, "step": jnp.zeros((), jnp.int32)}
        obs = self.observe(qpos, qvel, info)
        zero_action = jnp.zeros(self.action_size, jnp.float32)
        _, _, metrics = self.reward(qpos, qvel, info, zero_action)
        metrics = jax.tree.map(jnp.zeros_like, metrics)
        return qpos, qvel, ctrl, info, obs, metrics

    def evaluate(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[Obs, jax.Array, jax.Array, jax.Array, dict[str, jax.Array], Info]:
        """After the physics substeps: (obs, reward, terminated, truncated, metrics, info)."""
        info = {**info, "step": info["step"] + 1}
        reward, terminated, metrics = self.reward(qpos, qvel, info, action)
        truncated = jnp.logical_and(info["step"] >= self.episode_length, jnp.logical_not(terminated))
        obs = self.observe(qpos, qvel, info)
        return obs, reward.astype(jnp.float32), terminated, truncated, metrics, info

    def observation_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of `observe`'s output, derived without running it."""

        def obs_of(rng):
            return self.start(rng)[4]

        return jax.eval_shape(obs_of, jax.ShapeDtypeStruct((2,), jnp.uint32))


def check_action(action: jax.Array | np.ndarray, action_size: int, batch: int | None = None) -> None:
    """Raises ValueError naming the shape when an action batch does not fit the env."""
    want = (action_size,) if batch is None else (batch, action_size)
    if tuple(np.shape(action)) != want:
        raise ValueError(f"action has shape {tuple(np.shape(action))}, expected {want}")


def import_mjx():
    """`mujoco.mjx`, imported on first use (it pulls in more JAX than `import serl_gs` should). Its import
    prints notes about optional backends (warp) on stdout; they go to stderr so stdout stays clean for
    tools that print JSON lines."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        from mujoco import mjx
    return mjx


class MjxEnv:
    """Pure `reset`/`step` of one task on MJX. Vmappable and deterministic given the key."""

    def __init__(self, task: Task):
        self.task = task
        self._mjx = mjx = import_mjx()
        self.mjx_model = mjx.put_model(task.mj_model)

    def _data(self, qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array):
        data = self._mjx.make_data(self.mjx_model).replace(qpos=qpos, qvel=qvel, ctrl=ctrl)
        return self._mjx.forward(self.mjx_model, data)

    def reset(self, rng: jax.Array) -> State:
        qpos, qvel, ctrl, info, obs, metrics = self.task.start(rng)
        return State(
            data=self._data(qpos, qvel, ctrl),
            obs=obs,
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            metrics=metrics,
            info=info,
        )

    def step(self, state: State, action: jax.Array) -> State:
        task, data = self.task, state.data
        ctrl, info = task.control(data.qpos, data.qvel, state.info, action)
        data = data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, task.n_substeps, lambda _, d: self._mjx.step(self.mjx_model, d), data)
        obs, reward, terminated, truncated, metrics, info = task.evaluate(data.qpos, data.qvel, info, action)
        return State(data, obs, reward, terminated, truncated, metrics, info)
