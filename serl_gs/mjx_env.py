"""The env contract: a `Task` (pure JAX maths of one task) and `MjxEnv` (pure reset/step over one `State`).

A task never reads simulator internals beyond joint positions and velocities (`qpos`, `qvel`): its controller,
observation, reward and reset are pure functions of those, of its own `info`, and of the action. That keeps
the same task code valid on both physics paths:

- MJX (`MjxEnv`): `reset(rng) -> State` and `step(state, action) -> State` are pure, jittable and vmappable;
  the whole step (control, physics substeps, observation, reward) is one traced function.
- CPU MuJoCo (`serl_gs.cpu_physics`): the same `Task.control` and `Task.evaluate` run jitted around a
  batched MuJoCo C step, for CPU users for whom MJX is too slow (see docs/physics-paths.md).

MJX itself has two implementations behind the same `mjx.Data` (`MjxEnv(task, impl=...)`): `"jax"` (MJX's own
XLA code) and `"warp"` (MuJoCo Warp's kernels: the same physics as MuJoCo C; needs `warp-lang`). Both run the
same task code.

The frame rendered is the state observed: `mjx.step` computes kinematics at the state it starts from and then
integrates, so after the substeps `MjxEnv.step` recomputes body and camera poses at the final state.

Time limits and auto-reset are not part of a task: `Task.evaluate` counts steps and sets `truncated` when the
step count reaches the episode's limit (`info["limit"]`: `episode_length`, or less for a vector env's staggered
first episodes); the vector env (`serl_gs.vec_env`) resets finished episodes.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from serl_gs.env_options import MJX_IMPLS, MjxImpl, import_mjx, warp_installed

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
    # Control steps one env step spans with the same action (rewards summed; an episode end inside stops it).
    # `episode_length` and info["step"] count control steps.
    action_repeat: int = 1
    # Whether `reward` can ever return terminated=True. Tasks that end only by the time limit say False: their
    # resets can then be spread evenly over steps (serl_gs.vec_env, `resets_per_step="auto"`).
    can_terminate: bool = True

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
        limit = jnp.asarray(self.episode_length, jnp.int32)  # the time limit of this episode, in control steps
        info = {**info, "rng": rng, "step": jnp.zeros((), jnp.int32), "limit": limit}
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
        truncated = jnp.logical_and(info["step"] >= info["limit"], jnp.logical_not(terminated))
        obs = self.observe(qpos, qvel, info)
        return obs, reward.astype(jnp.float32), terminated, truncated, metrics, info

    def observation_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of `observe`'s output, derived without running it."""

        def obs_of(rng):
            return self.start(rng)[4]

        return jax.eval_shape(obs_of, jax.ShapeDtypeStruct((2,), jnp.uint32))


def start_repeat(state: State) -> State:
    """The accumulator of a repeated action: no reward yet, not ended (works batched or not)."""
    return state.replace(
        reward=jnp.zeros_like(state.reward),
        terminated=jnp.zeros_like(state.terminated),
        truncated=jnp.zeros_like(state.truncated),
    )


# What an episode that ended inside a repeat must keep of its physics state: its final state and frame. The rest
# of mjx.Data (and MJX-Warp's contact buffers, shared by all envs, which a per-env select would break) may run
# on: an ended env is reset at the end of the env step.
_KEPT_DATA = ("qpos", "qvel", "xpos", "xquat", "cam_xpos", "cam_xmat")


def accumulate_repeat(acc: State, new: State) -> State:
    """One more control step of a repeated action (`Task.action_repeat`), unbatched: where the episode had not
    ended, the state becomes `new` and its reward is added; an ended episode keeps its final state, so an end
    inside a repeat stops it."""
    running = jnp.logical_not(jnp.logical_or(acc.terminated, acc.truncated))
    pick = lambda n, a: jnp.where(running, n, a)
    if isinstance(new.data, PhysicsState):
        data = jax.tree.map(pick, new.data, acc.data)
    else:
        data = new.data.replace(**{f: pick(getattr(new.data, f), getattr(acc.data, f)) for f in _KEPT_DATA})
    merged = jax.tree.map(pick, new.replace(data=None), acc.replace(data=None))
    return merged.replace(data=data, reward=acc.reward + jnp.where(running, new.reward, 0.0))


def check_action(action: jax.Array | np.ndarray, action_size: int, batch: int | None = None) -> None:
    """Raises ValueError naming the shape when an action batch does not fit the env."""
    want = (action_size,) if batch is None else (batch, action_size)
    if tuple(np.shape(action)) != want:
        raise ValueError(f"action has shape {tuple(np.shape(action))}, expected {want}")


# The most contact points one geom pair yields in MuJoCo's primitive and convex colliders (box-box: 8).
MAX_CONTACTS_PER_PAIR = 8


def warp_capacity(mj_model: mujoco.MjModel) -> tuple[int, int]:
    """(contacts, constraint rows) per env that MJX-Warp must allocate for `mj_model`.

    MuJoCo Warp keeps fixed-size contact and constraint buffers and drops what does not fit, which changes the
    physics without a word; so these are upper bounds read off the model, not guesses: `MAX_CONTACTS_PER_PAIR`
    per geom pair that can collide (explicit <pair>s, plus geoms of different bodies whose contype/conaffinity
    match), each with the rows of its friction cone, plus one row per limited joint or tendon, per dof or tendon
    with friction loss, and the rows of every equality constraint.
    """
    m = mj_model
    collide = (m.geom_contype != 0) | (m.geom_conaffinity != 0)
    ids = np.flatnonzero(collide)
    filtered = 0
    for k, i in enumerate(ids):
        j = ids[k + 1 :]
        match = (m.geom_contype[i] & m.geom_conaffinity[j]) | (m.geom_contype[j] & m.geom_conaffinity[i])
        filtered += int(np.count_nonzero((match != 0) & (m.geom_bodyid[j] != m.geom_bodyid[i])))
    contacts = MAX_CONTACTS_PER_PAIR * (m.npair + filtered)
    condim = max([1, *m.pair_dim.tolist(), *m.geom_condim[ids].tolist()])
    elliptic = m.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    rows_per_contact = condim if elliptic or condim == 1 else 2 * (condim - 1)
    eq_rows = {
        mujoco.mjtEq.mjEQ_CONNECT: 3,
        mujoco.mjtEq.mjEQ_WELD: 6,
        mujoco.mjtEq.mjEQ_JOINT: 1,
        mujoco.mjtEq.mjEQ_TENDON: 1,
    }
    rows = (
        contacts * rows_per_contact
        + int(np.count_nonzero(m.jnt_limited))
        + int(np.count_nonzero(m.tendon_limited))
        + int(np.count_nonzero(m.dof_frictionloss > 0))
        + int(np.count_nonzero(m.tendon_frictionloss > 0))
        + sum(eq_rows.get(int(t), m.nv) for t in m.eq_type)
    )
    return max(contacts, 1), max(rows, 1)


def _fixed_cameras(mj_model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(body ids [ncam], positions [ncam, 3], orientations wxyz [ncam, 4]) of cameras fixed to their body;
    raises ValueError naming any camera that tracks or targets a body (not supported on MJX-Warp here)."""
    m = mj_model
    for i in np.flatnonzero(m.cam_mode != mujoco.mjtCamLight.mjCAMLIGHT_FIXED):
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, int(i)) or f"#{i}"
        mode = mujoco.mjtCamLight(int(m.cam_mode[i])).name
        raise ValueError(f"camera {name!r} has mode {mode}: MJX-Warp supports fixed cameras here; use mjx_impl='jax'")
    return m.cam_bodyid.copy(), m.cam_pos.astype(np.float32), m.cam_quat.astype(np.float32)


def _quat_mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Hamilton product of wxyz quaternions [..., 4]."""
    aw, ax, ay, az = jnp.moveaxis(a, -1, 0)
    bw, bx, by, bz = jnp.moveaxis(b, -1, 0)
    return jnp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _quat_to_mat(q: jax.Array) -> jax.Array:
    """wxyz unit quaternions [..., 4] -> rotation matrices [..., 3, 3] (as MuJoCo's mju_quat2Mat)."""
    w, x, y, z = jnp.moveaxis(q, -1, 0)
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


class MjxEnv:
    """Pure `reset`/`step` of one task on MJX. Vmappable and deterministic given the key.

    `impl` picks MJX's implementation. `num_envs` is how many envs one vmapped call runs: MJX-Warp shares one
    contact buffer between all of them and sizes it by that (`warp_capacity`); MJX-JAX ignores it.
    """

    def __init__(self, task: Task, impl: MjxImpl = "jax", num_envs: int = 1, randomize=None):
        if impl not in MJX_IMPLS:
            raise ValueError(f"mjx impl must be one of {MJX_IMPLS}, got {impl!r}")
        if not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.task = task
        self.impl = impl
        # A serl_gs.randomize.RandomizeConfig whose model fields vary per env (None: the task's own model).
        self._randomize = randomize if randomize is not None and randomize.physics_model else None
        if self._randomize is not None and self._randomize.object_size > 0:
            from serl_gs.physics_randomize import check_sizable

            check_sizable(task.mj_model)
        self._mjx = mjx = import_mjx()
        m = task.mj_model
        if impl == "warp":
            if not warp_installed():
                raise RuntimeError("mjx impl 'warp' needs warp-lang: pip install warp-lang==1.18.0")
            self._cameras = _fixed_cameras(m)
            self.mjx_model = mjx.put_model(m, impl="warp")
            contacts, rows = warp_capacity(m)
            self._template = mjx.make_data(m, impl="warp", naconmax=num_envs * contacts, njmax=rows)
        else:
            self.mjx_model = mjx.put_model(m, impl="jax")
            self._template = mjx.make_data(self.mjx_model)
            # Cameras that track a subtree's centre of mass read subtree_com, which kinematics does not update.
            com_modes = (mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM, mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM)
            self._needs_com = bool(np.isin(m.cam_mode, com_modes).any())

    def _data(self, qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array, info: Info):
        data = self._template.replace(qpos=qpos, qvel=qvel, ctrl=ctrl)
        return self._mjx.forward(self.model_for(info), data)

    def model_for(self, info: Info):
        """The model one env steps: the task's, or with its randomized fields drawn from its episode key."""
        if self._randomize is None:
            return self.mjx_model
        from serl_gs.physics_randomize import mjx_model_for
        from serl_gs.randomize import draw_physics

        return mjx_model_for(self.mjx_model, self.task.mj_model, draw_physics(self._randomize, info["rng"]))

    def frame(self, data):
        """`data` with body and camera poses computed at its own qpos (what the renderer reads)."""
        mjx, model = self._mjx, self.mjx_model
        data = mjx.kinematics(model, data)
        if self.impl == "jax":
            if self._needs_com:
                data = mjx.com_pos(model, data)
            return mjx.camlight(model, data)
        if not self.task.mj_model.ncam:
            return data
        body, pos, quat = self._cameras
        xpos, xquat = data.xpos[body], data.xquat[body]  # [ncam, 3], [ncam, 4]
        rot = _quat_to_mat(xquat)
        cam_xpos = xpos + jnp.einsum("cij,cj->ci", rot, pos)
        cam_xmat = _quat_to_mat(_quat_mul(xquat, quat))
        return data.replace(cam_xpos=cam_xpos, cam_xmat=cam_xmat)

    def reset(self, rng: jax.Array) -> State:
        qpos, qvel, ctrl, info, obs, metrics = self.task.start(rng)
        return State(
            data=self._data(qpos, qvel, ctrl, info),
            obs=obs,
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            metrics=metrics,
            info=info,
        )

    def step(self, state: State, action: jax.Array) -> State:
        repeat = self.task.action_repeat
        if repeat == 1:
            return self._control_step(state, action)
        add = lambda _, acc: accumulate_repeat(acc, self._control_step(acc, action))
        return jax.lax.fori_loop(0, repeat, add, start_repeat(state))

    def _control_step(self, state: State, action: jax.Array) -> State:
        task, data = self.task, state.data
        ctrl, info = task.control(data.qpos, data.qvel, state.info, action)
        data = data.replace(ctrl=ctrl)
        model = self.model_for(state.info)
        data = jax.lax.fori_loop(0, task.n_substeps, lambda _, d: self._mjx.step(model, d), data)
        data = self.frame(data)  # mjx.step left the poses one substep behind qpos
        obs, reward, terminated, truncated, metrics, info = task.evaluate(data.qpos, data.qvel, info, action)
        # Metrics others added (Brax's and Playground's wrappers) stay: a lax.scan over steps needs one structure.
        return State(data, obs, reward, terminated, truncated, {**state.metrics, **metrics}, info)
