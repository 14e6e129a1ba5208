"""One batch of envs per physics path, as `SerlVectorEnv` steps it: MJX (JAX or Warp) in one jitted program,
or MuJoCo C on CPU threads with the task's JAX maths jitted around it. Each step returns the states after and
before autoreset and, with pixels, the poses the render stage draws in one call plus a jitted assembly of the
images into observed and final frames (`BatchStep`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.env_options import MjxImpl, resolve_mjx_impl
from serl_gs.mjx_env import MjxEnv, PhysicsState, State, Task, accumulate_repeat, start_repeat
from serl_gs.randomize import RandomizeConfig


def _where(mask: jax.Array, new: Any, old: Any, single: Any) -> Any:
    """Per-env select over pytrees with a leading batch dim: new where mask [B] else old.

    `single` holds the shapes of one env's pytree: leaves with no batch dim there (MJX-Warp's contact and
    constraint buffers, shared by all envs and rebuilt every physics step) keep `old`, as `mjx.Data.where` does.
    """

    def pick(a, b, one):
        if a.ndim != one.ndim + 1:
            return b
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old, single)


def defer_truncations(stepped: State, budget: int) -> State:
    """At most `budget` episodes end in one step (batched `stepped`, before autoreset).

    Terminations always end. Truncations fill the room left, those already past their limit first, then by env
    id; the others are not truncated this step and run on: their step count stays at or past the limit, so they
    end at the next step with room. A held-back env ran only the control steps of this step's repeat before its
    limit (an episode end stops a repeat), so its episode is longer than the limit by at most the wait.
    """
    term, trunc, info = stepped.terminated, stepped.truncated, stepped.info
    room = budget - jnp.sum(term)
    overdue = jnp.logical_and(trunc, info["step"] > info["limit"])
    on_time = jnp.logical_and(trunc, jnp.logical_not(overdue))
    rank = jnp.where(overdue, jnp.cumsum(overdue), jnp.sum(overdue) + jnp.cumsum(on_time))  # 1-based among trunc
    return stepped.replace(truncated=jnp.logical_and(trunc, rank <= room))


@functools.lru_cache(maxsize=16)
def stagger_program(task: Task, num_envs: int) -> Callable[[State], State]:
    """Jitted: a batch's first episodes cut to staggered lengths, so their time limits fall evenly over steps.

    An episode spans n = ceil(episode_length / action_repeat) env steps; env i's first episode is cut by
    o_i = floor(i * n / B) of them (limit episode_length - o_i * action_repeat control steps, >= 1), so each
    step truncates at most ceil(B / n) envs, and every later episode is full length and keeps that spread.
    The offsets depend on the env id only (a batch's keys do not change them).
    """
    repeat, length = task.action_repeat, task.episode_length
    steps = -(-length // repeat)
    offsets = (np.arange(num_envs) * steps) // num_envs  # env steps cut from each first episode: 0 .. steps - 1
    limits = (length - offsets * repeat).astype(np.int32)

    def stagger(state: State) -> State:
        return state.replace(info={**state.info, "limit": jnp.asarray(limits)})

    return jax.jit(stagger)


def _reset_finished(start_one: Callable[[jax.Array], State], state: State) -> State:
    """Replaces finished envs (terminated or truncated) by fresh episodes drawn from their own rng;
    `start_one` starts one env (unbatched)."""
    done = jnp.logical_or(state.terminated, state.truncated)
    single = jax.eval_shape(start_one, state.info["rng"][0])

    def reset(s: State) -> State:
        return _where(done, jax.vmap(start_one)(s.info["rng"]), s, single)

    return jax.lax.cond(jnp.any(done), reset, lambda s: s, state)


Poses = tuple[Any, Any, Any, Any]  # body xpos [k, nbody, 3], xquat [k, nbody, 4], cam_xpos [k, ncam, 3], cam_xmat


def _poses(state: State) -> Poses:
    d = state.data
    return d.xpos, d.xquat, d.cam_xpos, d.cam_xmat


@functools.lru_cache(maxsize=16)
def mjx_programs(
    task: Task, impl: MjxImpl, num_envs: int, resets: int, randomize=None
) -> tuple[Callable, Callable, Callable]:
    """Jitted (reset, step, pixel step) of a task's MJX batch; cached so equal batches compile once per process.

    At most `resets` episodes end per step (`defer_truncations`). The pixel step also returns the poses to
    render, fixed at [B + resets] rows: the B envs at the end of the step (before autoreset), then the start of up
    to `resets` new episodes, with their env ids (B = unused row) and whether more envs than that finished (only
    terminations can outnumber it).
    """
    env = MjxEnv(task, impl, num_envs, randomize)  # randomize: per-env model fields (serl_gs.physics_randomize)
    reset = jax.vmap(env.reset)

    def step(state: State, action: jax.Array) -> tuple[State, State]:
        stepped = jax.vmap(env.step)(state, action)
        if resets < num_envs:
            stepped = defer_truncations(stepped, resets)
        return _reset_finished(env.reset, stepped), stepped

    def pixel_step(state: State, action: jax.Array):
        new, stepped = step(state, action)
        done = jnp.logical_or(stepped.terminated, stepped.truncated)
        (reset_ids,) = jnp.nonzero(done, size=resets, fill_value=num_envs)
        starts = jax.tree.map(lambda x: x[jnp.minimum(reset_ids, num_envs - 1)], _poses(new))
        poses = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), _poses(stepped), starts)
        return new, stepped, poses, reset_ids, jnp.sum(done) > resets

    return jax.jit(reset), jax.jit(step), jax.jit(pixel_step)


@functools.lru_cache(maxsize=16)
def assemble_program(num_envs: int) -> Callable:
    """Jitted (images [B + R, C, H, W, 3], reset ids [R]) -> (observed [B, ...], final [B, ...]) frames."""

    def assemble(images: jax.Array, reset_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        final = images[:num_envs]
        return final.at[reset_ids].set(images[num_envs:], mode="drop"), final

    return jax.jit(assemble)


@functools.lru_cache(maxsize=16)
def cpu_programs(task: Task, num_envs: int, resets: int) -> tuple[Callable, Callable, Callable, Callable]:
    """Jitted (start, control, evaluate, finish) around CPU MuJoCo physics; cached like `mjx_programs`.

    `finish(stepped) -> (new, stepped)` ends at most `resets` episodes (`defer_truncations`) and resets them.

    `control(acc, action, first)` gives the controls of one control step (`first`: the env step's first, which
    starts the accumulator with start_repeat); `evaluate(acc, info, qpos, qvel, action)` adds that step to the
    repeated action's accumulator (serl_gs.mjx_env.accumulate_repeat), so both physics paths share that logic,
    and says which envs ended. Nothing between them runs op by op: one env steps at jitted speed."""

    def start_one(rng: jax.Array) -> State:
        qpos, qvel, _, info, obs, metrics = task.start(rng)
        zero = jnp.zeros((), jnp.float32)
        return State(PhysicsState(qpos, qvel), obs, zero, zero > 0, zero > 0, metrics, info)

    start = jax.vmap(start_one)

    def control(acc: State, action: jax.Array, first: bool) -> tuple[State, jax.Array, dict]:
        acc = start_repeat(acc) if first else acc  # an env step starts with no reward and nothing ended
        ctrl, info = jax.vmap(task.control)(acc.data.qpos, acc.data.qvel, acc.info, action)
        return acc, ctrl, info

    def evaluate(acc: State, info: dict, qpos: jax.Array, qvel: jax.Array, action: jax.Array):
        qpos, qvel = qpos.astype(jnp.float32), qvel.astype(jnp.float32)  # MuJoCo C's float64, as MJX's float32
        obs, reward, term, trunc, metrics, info = jax.vmap(task.evaluate)(qpos, qvel, info, action)
        stepped = State(PhysicsState(qpos, qvel), obs, reward, term, trunc, metrics, info)
        acc = jax.vmap(accumulate_repeat)(acc, stepped)
        return acc, jnp.logical_or(acc.terminated, acc.truncated)

    def finish(stepped: State) -> tuple[State, State]:
        if resets < num_envs:
            stepped = defer_truncations(stepped, resets)
        return _reset_finished(start_one, stepped), stepped

    jitted_control = jax.jit(control, static_argnames="first")
    return jax.jit(start), jitted_control, jax.jit(evaluate), jax.jit(finish)


def _physics_randomize(randomization: RandomizeConfig | None) -> RandomizeConfig | None:
    """The (resolved) randomization if it varies model fields per env, else None."""
    return randomization if randomization is not None and randomization.physics_model else None


@functools.partial(jax.jit, static_argnums=0)
def _draw_physics_batch(randomize, keys: jax.Array) -> dict[str, jax.Array]:
    from serl_gs.randomize import draw_physics

    return jax.vmap(lambda k: draw_physics(randomize, k))(keys)


@dataclasses.dataclass
class BatchStep:
    state: State  # after autoreset
    stepped: State  # before it: holds the final obs of finished episodes
    render_poses: Poses | None  # pixels only: the poses to render this step, in one call
    assemble: Callable | None  # images of render_poses -> (observed frames [B, ...], final frames [B, ...])
    # pixels only: () -> (episode keys [rows, 2], steps [rows]) of render_poses' rows (serl_gs.randomize)
    render_keys: Callable | None = None


@jax.jit
def _row_keys(first: dict, extra: dict, extra_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(rng, step) of rendered rows: every env of `first`, then rows `extra_ids` of `extra` (clipped)."""
    ids = jnp.minimum(extra_ids, first["rng"].shape[0] - 1)
    return tuple(jnp.concatenate([first[k], extra[k][ids]]) for k in ("rng", "step"))


class MjxBatch:
    """All envs in one MJX program: one jitted call per step (physics, reward, autoreset, poses to render)."""

    def __init__(
        self,
        task: Task,
        impl: MjxImpl | Literal["auto"],
        num_envs: int,
        resets: int,
        renders: bool,
        randomization: RandomizeConfig | None = None,
    ):
        self.impl = resolve_mjx_impl(impl)
        n = num_envs
        self._num_envs = n
        self._resets = resets
        physics = _physics_randomize(randomization)
        self._reset, self._step, self._pixel_step = mjx_programs(task, self.impl, n, resets, physics)
        self._assemble = assemble_program(n)
        self._renders = renders
        # Only terminations can outnumber the reset rows (defer_truncations holds truncations back).
        self._check_overflow = resets < n and task.can_terminate
        self._overflow: jax.Array | None = None  # the previous step's flag, read one step late (no stall)

    def reset(self, keys: jax.Array) -> State:
        self._overflow = None
        return self._reset(keys)

    def step(self, state: State, action: jax.Array) -> BatchStep:
        if not self._renders:  # nothing here waits for the device: callers read done flags when they want them
            new, stepped = self._step(state, action)
            return BatchStep(new, stepped, None, None)
        if self._overflow is not None and bool(self._overflow):
            raise RuntimeError(
                f"more than resets_per_step={self._resets} envs terminated in one step, so some new episodes' "
                "first frames were not rendered; raise resets_per_step (None = num_envs)"
            )
        new, stepped, poses, reset_ids, overflow = self._pixel_step(state, action)
        if self._check_overflow:
            overflow.copy_to_host_async()
            self._overflow = overflow
        keys = lambda: _row_keys(stepped.info, new.info, reset_ids)
        return BatchStep(new, stepped, poses, lambda images: self._assemble(images, reset_ids), keys)

    def poses(self, state: State) -> Poses:
        return _poses(state)

    @property
    def reset_fn(self) -> Callable:
        """keys [k, 2] -> a batch of k fresh states (serl_gs.env_state reads its shapes)."""
        return self._reset

    def restored(self, env_ids: np.ndarray, state: State) -> None:
        """The batch state was replaced (serl_gs.env_state): forget the last step's overflow flag."""
        self._overflow = None

    def close(self) -> None:
        pass


class CpuBatch:
    """CPU MuJoCo steps the physics; the task's pure JAX maths runs jitted before and after it."""

    impl = None

    def __init__(
        self, task: Task, num_envs: int, renders: bool, resets: int, randomization: RandomizeConfig | None = None
    ):
        from serl_gs.cpu_physics import CpuBatchedPhysics

        self.physics = CpuBatchedPhysics(task.mj_model, num_envs, task.n_substeps)
        self._start, self._control, self._evaluate, self._finish = cpu_programs(task, num_envs, resets)
        self._resets = resets
        self._randomize = _physics_randomize(randomization)
        if self._randomize is not None and self._randomize.object_size > 0:
            from serl_gs.physics_randomize import check_sizable

            check_sizable(task.mj_model)
        if self._randomize is not None:  # one model per env (serl_gs.physics_randomize)
            self.physics.models = [copy.copy(task.mj_model) for _ in range(num_envs)]
        self._repeat = task.action_repeat
        self._renders = renders

    def _load(self, env_ids: np.ndarray, state: State) -> None:
        qpos, qvel = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
        self._set_models(env_ids, state)
        self.physics.set_state(env_ids, qpos[env_ids], qvel[env_ids])

    def _set_models(self, env_ids: np.ndarray, state: State) -> None:
        """Per-env models of envs env_ids set from their episode keys (randomized physics only)."""
        if self._randomize is None:
            return
        from serl_gs.physics_randomize import set_mujoco_model

        values = jax.tree.map(np.asarray, _draw_physics_batch(self._randomize, state.info["rng"]))
        for i in env_ids:
            set_mujoco_model(self.physics.models[i], self.physics.model, {k: v[i] for k, v in values.items()})

    def reset(self, keys: jax.Array) -> State:
        state = self._start(keys)
        self._load(np.arange(self.physics.num_envs), state)
        return state

    def step(self, state: State, action: jax.Array) -> BatchStep:
        stepped, ended = state, None
        for i in range(self._repeat):  # control steps of one action; ended episodes hold their final state
            stepped, ctrl, info = self._control(stepped, action, first=i == 0)
            self.physics.step(np.asarray(ctrl), hold=ended)
            stepped, ended = self._evaluate(stepped, info, self.physics.qpos, self.physics.qvel, action)
            ended = np.asarray(ended)
            if ended.all():
                break
        new, stepped = self._finish(stepped)
        ended = np.asarray(jnp.logical_or(stepped.terminated, stepped.truncated))
        if ended.sum() > self._resets:  # only terminations can outnumber it (defer_truncations)
            raise RuntimeError(
                f"{int(ended.sum())} envs terminated in one step, more than resets_per_step={self._resets}; "
                "raise resets_per_step (None = num_envs)"
            )
        done_ids = np.flatnonzero(ended)
        final = self.physics.poses(done_ids) if self._renders and len(done_ids) else None
        if len(done_ids):  # the final frames above were posed before the physics moves on to new episodes
            self._load(done_ids, new)
        if not self._renders:
            return BatchStep(new, stepped, None, None)
        poses = self.physics.poses()
        if final is not None:  # rows: the B envs now, then the k finished ones at their end
            poses = tuple(np.concatenate([a, b]) for a, b in zip(poses, final, strict=True))
        n = self.physics.num_envs

        def assemble(images):
            images = jnp.asarray(images)
            observed = images[:n]
            return observed, observed.at[done_ids].set(images[n:]) if len(done_ids) else observed

        keys = lambda: _row_keys(new.info, stepped.info, jnp.asarray(done_ids, jnp.int32))
        return BatchStep(new, stepped, poses, assemble, keys)

    def poses(self, state: State) -> Poses:
        return self.physics.poses()  # the physics holds `state`: the batch's current one

    @property
    def reset_fn(self) -> Callable:
        return self._start

    def restored(self, env_ids: np.ndarray, state: State) -> None:
        self._set_models(env_ids, state)

    def close(self) -> None:
        self.physics.close()
