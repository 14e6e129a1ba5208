"""A gymnasium VectorEnv over a batch of one task: all envs step in one call, on MJX or on CPU MuJoCo.

Autoreset is gymnasium's same-step mode (`AutoresetMode.SAME_STEP`): when an env's episode ends in `step`,
the returned `obs` already holds the first observation of its next episode, and the true final observation
is in `infos["final_obs"]` (a dict shaped like obs, its rows valid where the mask `infos["_final_obs"]` [N]
is True). Off-policy learners need that final observation; see `serl_gs.data.records`.

Observations and infos stay on the JAX device by default (`array_backend="jax"`); `array_backend="numpy"`
returns numpy. Reward, terminated and truncated [N] are writable numpy arrays on both backends.

`render_mode="rgb_array"`: `render()` returns one uint8 numpy frame [H, W, 3] per env (gymnasium's vector
contract), of `render_camera` (or every camera side by side) at `render_size` px; see serl_gs.render.frames.
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
ObsMode = Literal["state", "pixels"]
PHYSICS_PATHS = ("auto", "mjx", "mujoco")
ARRAY_BACKENDS = ("jax", "numpy")
OBS_MODES = ("state", "pixels")
RENDER_MODES = ("rgb_array",)


@dataclasses.dataclass(frozen=True)
class VecEnvConfig:
    num_envs: int = 1
    physics: PhysicsPath = "auto"  # auto: MJX when JAX runs on a GPU, else CPU MuJoCo (faster there)
    array_backend: ArrayBackend = "jax"
    seed: int | None = None  # default seed of the first reset() without one
    obs_mode: ObsMode = "state"  # "pixels" adds "pixels/<camera>" uint8 [H, W, 3] to the state observation
    render_backend: str = "auto"  # pixels only: "auto" | "gsplat" | "reference" (serl_gs.render)
    image_size: int = 64  # pixels only: square images
    cameras: tuple[str, ...] = ()  # pixels only: MJCF camera names; empty = every camera of the task
    render_mode: str | None = None  # "rgb_array": render() gives each env's frame (gymnasium's RecordVideo)
    render_camera: str = "all"  # render(): an MJCF camera name, or "all" side by side
    render_size: int | None = None  # render(): square side per camera; None: image_size with pixels, else 128
    scene: str | None = None  # a scene manifest (JSON): users' captures bound to bodies (serl_gs.render.manifest)

    def __post_init__(self):
        if not isinstance(self.num_envs, int) or self.num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {self.num_envs!r}")
        if self.physics not in PHYSICS_PATHS:
            raise ValueError(f"physics must be one of {PHYSICS_PATHS}, got {self.physics!r}")
        if self.array_backend not in ARRAY_BACKENDS:
            raise ValueError(f"array_backend must be one of {ARRAY_BACKENDS}, got {self.array_backend!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a tuple of camera names, got the string {self.cameras!r}")
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ValueError(
                f"render_mode must be None or one of {RENDER_MODES}, got {self.render_mode!r} (gymnasium.make "
                "turns 'human' and 'rgb_array_list' into wrappers over 'rgb_array')"
            )


def resolve_physics(physics: PhysicsPath) -> Literal["mjx", "mujoco"]:
    """`auto` picks MJX where JAX has a GPU and CPU MuJoCo otherwise (README, "Physics paths")."""
    if physics != "auto":
        return physics
    return "mjx" if jax.default_backend() == "gpu" else "mujoco"


def control_fps(task: Task) -> float:
    """Env steps per second of simulated time: the frame rate of a video of every step."""
    return 1.0 / (float(task.mj_model.opt.timestep) * task.n_substeps)


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


Poses = tuple[Any, Any, Any, Any]  # body xpos [k, nbody, 3], xquat [k, nbody, 4], cam_xpos [k, ncam, 3], cam_xmat


@dataclasses.dataclass
class _Step:
    state: State  # after autoreset
    stepped: State  # before it: holds the final obs of finished episodes
    done_ids: np.ndarray  # [k] envs whose episode ended this step
    final_poses: Poses | None  # their poses at the end (only when the batch renders)


class _MjxBatch:
    """All envs in one MJX program: one jitted call per step (physics, reward, autoreset)."""

    def __init__(self, task: Task, num_envs: int, renders: bool):
        self._reset, self._step = _mjx_programs(task)
        self._renders = renders

    def reset(self, keys: jax.Array) -> State:
        return self._reset(keys)

    def step(self, state: State, action: jax.Array) -> _Step:
        new, stepped = self._step(state, action)
        if not self._renders:  # no host sync needed: the caller reads done flags when it wants them
            return _Step(new, stepped, np.zeros(0, np.int64), None)
        done_ids = np.flatnonzero(np.asarray(jnp.logical_or(stepped.terminated, stepped.truncated)))
        final = self.poses(stepped, done_ids) if len(done_ids) else None
        return _Step(new, stepped, done_ids, final)

    def poses(self, state: State, env_ids: np.ndarray | None = None) -> Poses:
        d = state.data
        poses = (d.xpos, d.xquat, d.cam_xpos, d.cam_xmat)
        return poses if env_ids is None else tuple(x[jnp.asarray(env_ids)] for x in poses)

    def close(self) -> None:
        pass


class _CpuBatch:
    """CPU MuJoCo steps the physics; the task's pure JAX maths runs jitted before and after it."""

    def __init__(self, task: Task, num_envs: int, renders: bool):
        from serl_gs.cpu_physics import CpuBatchedPhysics

        self.physics = CpuBatchedPhysics(task.mj_model, num_envs, task.n_substeps)
        self._start, self._control, self._finish = _cpu_programs(task)
        self._renders = renders

    def _load(self, env_ids: np.ndarray, state: State) -> None:
        qpos, qvel = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
        self.physics.set_state(env_ids, qpos[env_ids], qvel[env_ids])

    def reset(self, keys: jax.Array) -> State:
        state = self._start(keys)
        self._load(np.arange(self.physics.num_envs), state)
        return state

    def step(self, state: State, action: jax.Array) -> _Step:
        ctrl, info = self._control(state.data.qpos, state.data.qvel, state.info, action)
        self.physics.step(np.asarray(ctrl))
        qpos = jnp.asarray(self.physics.qpos, jnp.float32)
        qvel = jnp.asarray(self.physics.qvel, jnp.float32)
        new, stepped = self._finish(state.replace(info=info), qpos, qvel, action)
        done_ids = np.flatnonzero(np.asarray(jnp.logical_or(stepped.terminated, stepped.truncated)))
        final = None
        if len(done_ids):
            if self._renders:  # the last frame must be drawn before the physics moves on to new episodes
                final = self.physics.poses(done_ids)
            self._load(done_ids, new)
        return _Step(new, stepped, done_ids, final)

    def poses(self, state: State, env_ids: np.ndarray | None = None) -> Poses:
        return self.physics.poses(env_ids)  # the physics holds `state`: the batch's current one

    def close(self) -> None:
        self.physics.close()


class SerlVectorEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one task stepped in one batch. Build through `gymnasium.make_vec`."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": list(RENDER_MODES)}

    def __init__(self, task: Task, config: VecEnvConfig):
        self.task = task
        self.config = config
        self.num_envs = config.num_envs
        self.physics = resolve_physics(config.physics)
        renders = config.obs_mode == "pixels"
        self._batch = (_MjxBatch if self.physics == "mjx" else _CpuBatch)(task, config.num_envs, renders)
        self.gaussian_scene = self._load_scene() if config.scene is not None else None  # None: generated
        self.renderer = self._make_renderer() if renders else None
        self.render_mode = config.render_mode
        self.metadata = {**self.metadata, "render_fps": control_fps(task)}
        self._frames = self._make_frame_renderer() if config.render_mode is not None else None
        self._stepped: State | None = None  # the last step's states before autoreset

        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (task.action_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        spaces = {
            k: gym.spaces.Box(-np.inf, np.inf, s.shape, np.dtype(s.dtype)) for k, s in task.observation_shapes().items()
        }
        if self.renderer is not None:
            h, w = self.renderer.image_shape
            for name in self.renderer.camera_names:
                spaces[f"pixels/{name}"] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._state: State | None = None
        self._obs: dict[str, Any] = {}
        self._default_seed = config.seed

    def _make_renderer(self):
        from serl_gs.render import RenderConfig, RenderStage  # torch loads only when pixels are asked for

        c = self.config
        render_config = RenderConfig(backend=c.render_backend, image_size=c.image_size, cameras=tuple(c.cameras))
        return RenderStage(self.task.mj_model, render_config, self.gaussian_scene)

    def _load_scene(self):
        from serl_gs.render.manifest import scene_with_captures

        return scene_with_captures(self.task.mj_model, self.config.scene)

    # ---- gymnasium API ----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed = self._default_seed
            if seed is None:
                seed = int(np.random.SeedSequence().entropy % 2**31)
            self._default_seed = None
        base = jax.random.PRNGKey(seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.num_envs))
        self._state = self._batch.reset(keys)
        self._obs = self._observation(self._state)
        return self._out(self._obs), {}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        check_action(actions, self.task.action_size, self.num_envs)
        out = self._batch.step(self._state, jnp.asarray(actions, jnp.float32))
        self._state, stepped = out.state, out.stepped
        self._stepped = stepped
        self._obs = self._observation(out.state)
        final_obs = dict(stepped.obs)
        if self.renderer is not None:
            # Rows of finished envs get their true last frame; the others keep this step's (they are masked).
            final_pixels = self._pixels(out.final_poses) if out.final_poses is not None else {}
            for key, pixels in self._obs.items():
                if key.startswith("pixels/"):
                    final_obs[key] = pixels.at[out.done_ids].set(final_pixels[key]) if key in final_pixels else pixels
        done = jnp.logical_or(stepped.terminated, stepped.truncated)
        infos: dict[str, Any] = {"final_obs": final_obs, "_final_obs": done, **stepped.metrics}
        infos["episode_step"] = stepped.info["step"]
        # Reward and done flags [N] come to the host as writable numpy on both backends: every consumer reads
        # them there, and gymnasium's vector wrappers (RecordEpisodeStatistics, ClipReward) write into them.
        return (
            self._out(self._obs),
            np.array(stepped.reward),
            np.array(stepped.terminated),
            np.array(stepped.truncated),
            self._out(infos),
        )

    def close(self, **kwargs) -> None:
        self._batch.close()

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each env's frame now (uint8 [H, W, 3] numpy), with `render_mode="rgb_array"`."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; make the env with render_mode='rgb_array'")
            return None
        return tuple(self.render_frames(self.body_poses(), self._obs))

    # ---- helpers ----------------------------------------------------------------------------------------
    def render_frames(self, poses: Poses, obs: dict[str, Any] | None = None) -> np.ndarray:
        """`render()` frames [k, H, W, 3] of the envs whose poses are given (e.g. `final_poses`); `obs`: their
        observations, whose pixels are reused when they are the frames asked for."""
        if self._frames is None:
            self._frames = self._make_frame_renderer()
        return self._frames.frames(poses, obs)

    def _make_frame_renderer(self):
        from serl_gs.render.frames import FrameConfig, FrameRenderer  # torch loads on the first frame

        c = self.config
        size = c.render_size or (c.image_size if c.obs_mode == "pixels" else 128)
        frame_config = FrameConfig(camera=c.render_camera, size=size, backend=c.render_backend)
        return FrameRenderer(self.task.mj_model, frame_config, self.gaussian_scene)

    def frame_poses(self, final: bool = False) -> Poses:
        """Poses of every env from its joint positions (MuJoCo kinematics on the host): now, or with `final` at
        the end of the last step before autoreset, i.e. a finished episode's last state."""
        from serl_gs.render.poses import poses_from_qpos

        state = self._stepped if final else self._state
        if state is None:
            raise RuntimeError("call reset() (and step(), for final poses) before frame_poses()")
        return poses_from_qpos(self.task.mj_model, np.asarray(state.data.qpos))

    def body_poses(self) -> Poses:
        """World poses of every env's bodies and cameras now (xpos, xquat, cam_xpos, cam_xmat), for renderers
        outside the env (e.g. eval videos of a state-only policy)."""
        if self._state is None:
            raise RuntimeError("call reset() before body_poses()")
        return self._batch.poses(self._state)

    @property
    def state(self) -> State | None:
        """The batched env state (after autoreset); for tests and tools."""
        return self._state

    def _out(self, tree):
        return jax.tree.map(np.asarray, tree) if self.config.array_backend == "numpy" else tree

    def _observation(self, state: State) -> dict[str, Any]:
        obs = dict(state.obs)
        if self.renderer is not None:
            obs.update(self._pixels(self._batch.poses(state)))
        return obs

    def _pixels(self, poses: Poses) -> dict[str, jax.Array]:
        """The render stage, between physics and policy: {"pixels/<camera>": uint8 [k, H, W, 3]} as JAX arrays."""
        images = jnp.asarray(self.renderer.render(*poses))  # [k, C, H, W, 3]; DLPack, no copy, for JAX poses
        return {f"pixels/{name}": images[:, i] for i, name in enumerate(self.renderer.camera_names)}
