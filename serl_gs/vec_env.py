"""A gymnasium VectorEnv over a batch of one task: all envs step in one call, on MJX or on CPU MuJoCo.

Autoreset is gymnasium's same-step mode (`AutoresetMode.SAME_STEP`): when an env's episode ends in `step`,
the returned `obs` already holds the first observation of its next episode, and the true final observation
is in `infos["final_obs"]` (a dict shaped like obs, its rows valid where the mask `infos["_final_obs"]` [N]
is True). Off-policy learners need that final observation; see `serl_gs.data.records`.

Observations and infos stay on the JAX device by default (`array_backend="jax"`); `array_backend="numpy"`
returns numpy. Reward, terminated and truncated [N] are writable numpy arrays on both backends.

`render_mode="rgb_array"`: `render()` returns one uint8 numpy frame [H, W, 3] per env (gymnasium's vector
contract), of `render_camera` (or every camera side by side) at `render_size` px; see serl_gs.render.frames.

With pixels, each step renders once, between two jitted functions: the step's poses go to the render stage
and the images come back into a jitted assembly. On MJX every shape is fixed and nothing waits for the
device: the step renders the B frames at the end of the step (the observation of running envs, the true
final frame of finished ones) plus `resets_per_step` rows for the first frames of new episodes. On CPU MuJoCo
it renders the B frames now plus the final frames of the envs that finished (at most `resets_per_step`).

Resets per step (docs/actor-at-scale.md). `resets_per_step` bounds how many episodes end in one step: when
more envs reach their time limit, the surplus is truncated at a later step (its episode runs a step or more
past the limit); terminations always end, and more of them than the bound is an error. None: no bound (B).
"auto": ceil(B / n) for a task that cannot terminate (n env steps per episode), else B; logged once.
`stagger=True` cuts the first episode of env i to a staggered length (`serl_gs.vec_batches.stagger_program`),
so from the first step on at most ceil(B / n) envs reach their limit together and every env renders once per
step plus those few reset rows. First episodes are then shorter than `episode_length` (their returns and
success are not comparable to full ones); evaluation does not stagger and counts full episodes only.

`step_on_device(actions)` is `step` without any read of device memory on the host: reward and done flags
stay JAX arrays too (the actor copies each step's records to the host once, serl_gs.data.records).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from serl_gs.data.records import DEPTH_PREFIX, PIXELS_PREFIX, SEGMENTATION_PREFIX
from serl_gs.env_options import (
    MJX_IMPL_CHOICES,
    OBS_MODES,
    PHYSICS_PATHS,
    MjxImpl,
    ObsMode,
    PhysicsPath,
    resolve_physics,
)
from serl_gs.mjx_env import State, Task, check_action
from serl_gs.randomize import resolve as resolve_randomize
from serl_gs.randomize import resolve_shift
from serl_gs.vec_batches import CpuBatch, MjxBatch, Poses, stagger_program

log = logging.getLogger(__name__)

ArrayBackend = Literal["jax", "numpy"]
ARRAY_BACKENDS = ("jax", "numpy")
RENDER_MODES = ("rgb_array",)


@dataclasses.dataclass(frozen=True)
class VecEnvConfig:
    num_envs: int = 1
    physics: PhysicsPath = "auto"  # auto: MJX when JAX runs on a GPU, else CPU MuJoCo (faster there)
    mjx_impl: MjxImpl | Literal["auto"] = "auto"  # MJX only: "warp" | "jax"; auto: warp where warp-lang is installed
    array_backend: ArrayBackend = "jax"
    seed: int | None = None  # default seed of the first reset() without one
    obs_mode: ObsMode = "state"  # "pixels" adds "pixels/<camera>" uint8 [H, W, 3] to the state observation
    render_backend: str = "auto"  # pixels only: "auto" | "gsplat" | "reference" (serl_gs.render)
    image_size: int = 64  # pixels only: square images
    pixels_render_size: int | None = None  # pixels only: rasterize at this side, area-downsample to image_size
    cameras: tuple[str, ...] = ()  # pixels only: MJCF camera names; empty = every camera of the task
    # Most episodes that end in one step (surplus truncations wait; see above): None = num_envs, "auto": from the
    # episode length. With pixels, the extra rows each step renders for new episodes' first frames.
    resets_per_step: int | Literal["auto"] | None = None
    stagger: bool = False  # cut first episodes to staggered lengths, so time limits fall evenly over steps
    render_mode: str | None = None  # "rgb_array": render() gives each env's frame (gymnasium's RecordVideo)
    render_camera: str = "all"  # render(): an MJCF camera name, or "all" side by side
    render_size: int | None = None  # render(): square side per camera; None: image_size with pixels, else 128
    scene: str | None = None  # a scene manifest (JSON): users' captures bound to bodies (serl_gs.render.manifest)
    randomize: Any = None  # None | "none" | "light" | "strong" | a serl_gs.randomize.RandomizeConfig
    depth: bool = False  # pixels only: "depth/<camera>" uint16 [H, W, 1] mm (0: nothing drawn), same render call
    segmentation: bool = False  # pixels only: "segmentation/<camera>" uint8 [H, W, 1] body group (randomize.GROUPS)
    shift: Any = None  # pixels only, for evals: None | a name of serl_gs.randomize.SHIFTS | a ShiftConfig

    def __post_init__(self):
        if not isinstance(self.num_envs, int) or self.num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {self.num_envs!r}")
        if self.physics not in PHYSICS_PATHS:
            raise ValueError(f"physics must be one of {PHYSICS_PATHS}, got {self.physics!r}")
        if self.mjx_impl not in MJX_IMPL_CHOICES:
            raise ValueError(f"mjx_impl must be one of {MJX_IMPL_CHOICES}, got {self.mjx_impl!r}")
        r = self.resets_per_step
        if r is not None and r != "auto" and (not isinstance(r, int) or not 0 < r <= self.num_envs):
            raise ValueError(
                f"resets_per_step must be an int in [1, num_envs={self.num_envs}], 'auto' or None, got {r!r}"
            )
        if not isinstance(self.stagger, bool):
            raise ValueError(f"stagger must be a bool, got {self.stagger!r}")
        if self.array_backend not in ARRAY_BACKENDS:
            raise ValueError(f"array_backend must be one of {ARRAY_BACKENDS}, got {self.array_backend!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a tuple of camera names, got the string {self.cameras!r}")
        resolve_randomize(self.randomize)  # a bad preset or range fails here, naming it
        if resolve_shift(self.shift) is not None and self.obs_mode != "pixels":
            raise ValueError(f"shift={self.shift!r} changes rendered frames: it needs obs_mode='pixels'")
        if (self.depth or self.segmentation) and self.obs_mode != "pixels":
            raise ValueError(
                f"depth={self.depth} and segmentation={self.segmentation} come from the render stage: they need "
                f"obs_mode='pixels', got {self.obs_mode!r}"
            )
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ValueError(
                f"render_mode must be None or one of {RENDER_MODES}, got {self.render_mode!r} (gymnasium.make "
                "turns 'human' and 'rgb_array_list' into wrappers over 'rgb_array')"
            )


def steps_per_episode(task: Task) -> int:
    """Env steps of a full episode: each spans `action_repeat` control steps."""
    return -(-task.episode_length // task.action_repeat)


def resolve_resets_per_step(resets: int | Literal["auto"] | None, task: Task, num_envs: int) -> tuple[int, str]:
    """(most episodes that end per step, why). "auto": enough for evenly spread time limits when the task cannot
    terminate, else every env (terminations come when they come)."""
    if resets is None:
        return num_envs, "None: every env"
    if resets != "auto":
        return resets, "requested"
    if task.can_terminate:
        return num_envs, f"auto: {type(task).__name__} can terminate, so any number of envs may end at once"
    steps = steps_per_episode(task)
    return -(-num_envs // steps), f"auto: ceil({num_envs} envs / {steps} env steps per episode)"


def control_fps(task: Task) -> float:
    """Env steps per second of simulated time: the frame rate of a video of every step."""
    return 1.0 / (float(task.mj_model.opt.timestep) * task.n_substeps)


class SerlVectorEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one task stepped in one batch. Build through `gymnasium.make_vec`."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": list(RENDER_MODES)}

    def __init__(self, task: Task, config: VecEnvConfig):
        self.task = task
        self.config = config
        self.num_envs = config.num_envs
        self.physics = resolve_physics(config.physics)
        renders = config.obs_mode == "pixels"
        self.randomization = resolve_randomize(config.randomize)  # None: nothing randomized
        self.shift = resolve_shift(config.shift)  # None: no held-out shift
        self.resets_per_step, why = resolve_resets_per_step(config.resets_per_step, task, config.num_envs)
        if config.resets_per_step == "auto":
            log.debug("resets_per_step: %d (%s)", self.resets_per_step, why)  # nodes say it
        self.resets_reason = why
        self._batch = self._make_batch()
        self._closed = False
        self.mjx_impl: MjxImpl | None = self._batch.impl  # None on the CPU MuJoCo path
        self.gaussian_scene = self._load_scene() if config.scene is not None else None  # None: generated
        self.renderer = self._make_renderer() if renders else None
        r = self.randomization
        self._latency = r if r is not None and r.latency_steps > 0 else None
        self._action_history = None  # [latency_steps + 1, N, A] with latency (serl_gs.physics_randomize)
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
                spaces[PIXELS_PREFIX + name] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
                if config.depth:
                    spaces[DEPTH_PREFIX + name] = gym.spaces.Box(0, 65535, (h, w, 1), np.uint16)
                if config.segmentation:
                    spaces[SEGMENTATION_PREFIX + name] = gym.spaces.Box(0, 255, (h, w, 1), np.uint8)
        if not spaces:
            raise ValueError(f"{type(task).__name__} with {task.config} observes nothing with obs_mode='state'")
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._state: State | None = None
        self._obs: dict[str, Any] = {}
        self._default_seed = config.seed

    def _make_batch(self) -> MjxBatch | CpuBatch:
        c, renders = self.config, self.config.obs_mode == "pixels"
        if self.physics == "mjx":
            return MjxBatch(self.task, c.mjx_impl, c.num_envs, self.resets_per_step, renders, self.randomization)
        return CpuBatch(self.task, c.num_envs, renders, self.resets_per_step, self.randomization)

    def _make_renderer(self):
        from serl_gs.render import RenderConfig, RenderStage  # torch loads only when pixels are asked for

        c = self.config
        render_config = RenderConfig(backend=c.render_backend, image_size=c.image_size, cameras=tuple(c.cameras),
                                     render_size=c.pixels_render_size)  # fmt: skip
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
        if self._closed:  # reopen, as gymnasium's MuJoCo envs do (SB3's check_env closes, then resets and steps)
            self._batch, self._closed = self._make_batch(), False
        base = jax.random.PRNGKey(seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.num_envs))
        self._state = self._batch.reset(keys)
        if self.config.stagger:
            self._state = stagger_program(self.task, self.num_envs)(self._state)
        self._obs = dict(self._state.obs)
        if self._latency is not None:
            shape = (self._latency.latency_steps + 1, self.num_envs, self.task.action_size)
            self._action_history = jnp.zeros(shape, jnp.float32)
        if self.renderer is not None:
            keys = lambda: (self._state.info["rng"], self._state.info["step"])
            for prefix, images in self._render(self._batch.poses(self._state), keys).items():
                self._obs.update(self._split_cameras(images, prefix))
        return self._out(self._obs), {}

    def step(self, actions):
        obs, reward, terminated, truncated, infos = self.step_on_device(actions)
        # Reward and done flags [N] come to the host as writable numpy on both backends, in one transfer: every
        # consumer reads them there, and gymnasium's vector wrappers (RecordEpisodeStatistics, ClipReward) write
        # into them.
        reward, terminated, truncated = (np.array(x) for x in jax.device_get((reward, terminated, truncated)))
        return obs, reward, terminated, truncated, infos

    def step_on_device(self, actions):
        """`step` with reward, terminated and truncated [N] as JAX arrays: on MJX nothing here reads device memory
        on the host (obs and infos follow `array_backend`)."""
        if self._closed:
            raise RuntimeError("this env was closed: reset() reopens it")
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        check_action(actions, self.task.action_size, self.num_envs)
        actions = jnp.asarray(actions, jnp.float32)
        if self._latency is not None:  # each env applies the action it chose `latency` steps ago
            from serl_gs.physics_randomize import delay_actions

            actions, history = delay_actions(self._latency, self._action_history, actions, self._state.info["rng"])
        out = self._batch.step(self._state, actions)
        self._state, stepped = out.state, out.stepped
        self._stepped = stepped
        self._obs = dict(out.state.obs)
        final_obs = dict(stepped.obs)
        if self.renderer is not None:
            # Rows of finished envs hold their true last frame in final_obs; the others equal obs (masked).
            for prefix, images in self._render(out.render_poses, out.render_keys).items():
                observed, final = out.assemble(images)
                self._obs.update(self._split_cameras(observed, prefix))
                final_obs.update(self._split_cameras(final, prefix))
        done = jnp.logical_or(stepped.terminated, stepped.truncated)
        if self._latency is not None:
            from serl_gs.physics_randomize import clear_finished

            self._action_history = clear_finished(history, done)
        infos: dict[str, Any] = {"final_obs": final_obs, "_final_obs": done, **stepped.metrics}
        infos["episode_step"] = stepped.info["step"]
        return self._out(self._obs), stepped.reward, stepped.terminated, stepped.truncated, self._out(infos)

    def close(self, **kwargs) -> None:
        if not self._closed:
            self._batch.close()
            self._closed, self._state = True, None

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each env's frame now (uint8 [H, W, 3] numpy), with `render_mode="rgb_array"`."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; make the env with render_mode='rgb_array'")
            return None
        return tuple(self.render_frames(self.body_poses(), self._obs))

    def get_state(self, env_ids=None) -> bytes:
        """Pickle-free bytes of envs `env_ids` (None: all): physics, task state, rng, last observations.
        `set_state` continues them bit-identically (serl_gs.env_state)."""
        from serl_gs.env_state import save_vector_env

        return save_vector_env(self, env_ids)

    def set_state(self, state: bytes, env_ids=None) -> list[int]:
        """Restores `get_state`'s bytes into envs `env_ids` (None: the envs they came from); returns those ids."""
        from serl_gs.env_state import restore_vector_env

        return restore_vector_env(self, state, env_ids)

    # ---- helpers ----------------------------------------------------------------------------------------
    def render_frames(self, poses: Poses, obs: dict[str, Any] | None = None) -> np.ndarray:
        """`render()` frames [k, H, W, 3] of the envs whose poses are given (e.g. `frame_poses(final=True)`); `obs`:
        their observations, whose pixels are reused when they are the frames asked for."""
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

    def _render(self, poses: Poses, row_keys=None) -> dict[str, Any]:
        """The render stage, between physics and policy, JAX in -> JAX out (DLPack): {"pixels/": uint8 [k, C, H,
        W, 3]} and, when asked, "depth/" and "segmentation/" [k, C, H, W]. `row_keys()` gives the rows' (episode
        keys, steps) from which their visual randomization is drawn."""
        r, c = self.randomization, self.config
        draw = None
        if r is not None and r.visual:
            from serl_gs.randomize import draw_visual

            keys, steps = row_keys()
            draw = draw_visual(r, keys, steps, len(self.renderer.camera_names), self.renderer.group_luma)
        if self.shift is not None:  # the same fixed change in every row, after any randomization
            from serl_gs.randomize import shift_draw, then_shift

            rows = int(np.shape(poses[0])[0])
            shifted = shift_draw(self.shift, rows, len(self.renderer.camera_names), self.renderer.group_luma)
            draw = shifted if draw is None else then_shift(draw, shifted)
        if not (c.depth or c.segmentation):
            return {PIXELS_PREFIX: self.renderer.render(*poses, visual=draw)}
        out = self.renderer.render_outputs(*poses, visual=draw, depth=c.depth, segmentation=c.segmentation)
        images = {PIXELS_PREFIX: out["rgb"]}
        if c.depth:
            images[DEPTH_PREFIX] = _depth_mm(jnp.asarray(out["depth"]))[..., None]  # channels last, as RGB
        if c.segmentation:
            images[SEGMENTATION_PREFIX] = jnp.asarray(out["segmentation"])[..., None]
        return images

    def _split_cameras(self, images, prefix: str = PIXELS_PREFIX) -> dict[str, jax.Array]:
        """[B, C, H, W, ...] -> {"<prefix><camera>": [B, H, W, ...]} as JAX arrays, in one jitted call (eager
        indexing would send each camera's index to the device every step)."""
        frames = _unstack_cameras(jnp.asarray(images))
        return {prefix + name: f for name, f in zip(self.renderer.camera_names, frames, strict=True)}



@jax.jit
def _depth_mm(depth: jax.Array) -> jax.Array:
    """Metric depth float32 -> uint16 millimetres (0: nothing drawn; clipped at 65.535 m): exact to 0.5 mm, half
    the bytes of float32, and what depth cameras deliver."""
    return jnp.clip(jnp.round(depth * 1000.0), 0, 65535).astype(jnp.uint16)


@jax.jit
def _unstack_cameras(images: jax.Array) -> tuple[jax.Array, ...]:  # [B, C, H, W, ...] -> C x [B, H, W, ...]
    return tuple(images[:, i] for i in range(images.shape[1]))
