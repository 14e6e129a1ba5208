"""What every node must agree on: which env, and which observations (the agent's side of the agreement, the
policy payload, lives beside the networks in `serl_gs.agents.payload`)."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

import jax
import numpy as np

from serl_gs.data.frame_stack import stack_obs_spec
from serl_gs.data.records import DEPTH_PREFIX, PIXELS_PREFIX, SEGMENTATION_PREFIX
from serl_gs.env_options import OBS_MODES, PHYSICS_PATHS, ObsMode, PhysicsPath
from serl_gs.randomize import PRESETS
from serl_gs.render.config import BackendName


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Which env and which observations; every node builds its envs (or, the learner, its shapes) from this."""

    env: str = "serl_gs/PandaPickCube-v0"  # a task id (serl_gs.tasks): "serl_gs/<Name>-v0" or "your_module:<Name>-v0"
    obs_mode: ObsMode = "state"
    image_size: int = 64
    cameras: tuple[str, ...] = ()  # empty: every camera of the task
    render_backend: BackendName = "auto"
    physics: PhysicsPath = "auto"
    episode_length: int | None = None  # None: the task's default
    scene: str | None = None  # a manifest of 3DGS captures bound to bodies (serl_gs.render.manifest); None: generated
    action_repeat: int | None = None  # control steps per env step (the task option); None: the task's default
    frame_stack: int = 1  # frames per camera in the policy's observation (serl_gs.data.frame_stack); pixels only
    randomize: str = "none"  # domain randomization preset (serl_gs.randomize.PRESETS); each node's own choice
    render_size: int | None = None  # pixels: rasterize at this side, area-downsample to image_size; None: image_size
    depth: bool = False  # pixels: "depth/<camera>" uint16 mm [H, W, 1] too; the encoder takes RGB-D
    segmentation: bool = False  # pixels: "segmentation/<camera>" uint8 body group [H, W, 1] too (stored)

    def __post_init__(self):
        choices = (("obs_mode", OBS_MODES), ("physics", PHYSICS_PATHS), ("render_backend", get_args(BackendName)))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a tuple of camera names, got the string {self.cameras!r}")
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1 or None, got {self.episode_length!r}")
        if self.action_repeat is not None and (not isinstance(self.action_repeat, int) or self.action_repeat < 1):
            raise ValueError(f"action_repeat must be an int >= 1 or None, got {self.action_repeat!r}")
        if not isinstance(self.frame_stack, int) or self.frame_stack < 1:
            raise ValueError(f"frame_stack must be an int >= 1, got {self.frame_stack!r}")
        if self.randomize not in PRESETS:
            raise ValueError(f"randomize must be one of {sorted(PRESETS)}, got {self.randomize!r}")
        if self.render_size is not None and (self.render_size < 1 or self.render_size % self.image_size):
            raise ValueError(f"render_size must be a positive multiple of image_size {self.image_size}, "
                             f"got {self.render_size!r}")  # fmt: skip
        if self.frame_stack > 1 and self.obs_mode != "pixels":
            raise ValueError(f"frame_stack={self.frame_stack} stacks camera frames: it needs obs_mode='pixels'")
        if (self.depth or self.segmentation) and self.obs_mode != "pixels":
            raise ValueError(f"depth={self.depth} and segmentation={self.segmentation} come from the render stage: "
                             f"they need obs_mode='pixels', got {self.obs_mode!r}")  # fmt: skip

    def task_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.episode_length is not None:
            kwargs["episode_length"] = self.episode_length
        if self.action_repeat is not None:
            kwargs["action_repeat"] = self.action_repeat
        return kwargs

    def policy_obs_spec(self, obs_spec: dict[str, jax.ShapeDtypeStruct]) -> dict[str, jax.ShapeDtypeStruct]:
        """What the policy sees from the env's per-env shapes: each camera's last `frame_stack` frames."""
        return stack_obs_spec(obs_spec, self.frame_stack)

    def task(self) -> dict[str, Any]:
        """What the nodes of one run must agree on, JSON-ready (render backend and physics are each node's own;
        image size and cameras matter for pixels only)."""
        task: dict[str, Any] = {"env": self.env, "obs_mode": self.obs_mode}
        if self.action_repeat is not None:
            task["action_repeat"] = self.action_repeat
        if self.obs_mode == "pixels":
            task.update(image_size=self.image_size, cameras=list(self.cameras))
            if self.frame_stack > 1:
                task["frame_stack"] = self.frame_stack
            for name in ("depth", "segmentation"):  # present only when on: older runs' tasks stay the same
                if getattr(self, name):
                    task[name] = True
        return task

    def make_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"physics": self.physics, "obs_mode": self.obs_mode, **self.task_kwargs()}
        if self.obs_mode == "pixels":
            kwargs.update(image_size=self.image_size, cameras=tuple(self.cameras), render_backend=self.render_backend)
            if self.render_size is not None:
                kwargs["pixels_render_size"] = self.render_size
            for name in ("depth", "segmentation"):
                if getattr(self, name):
                    kwargs[name] = True
        if self.scene:
            kwargs["scene"] = self.scene
        if self.randomize != "none":
            kwargs["randomize"] = self.randomize
        return kwargs

    def make_vec(self, num_envs: int, seed: int | None = None, **vec_options: Any):
        """The vector env; `vec_options`: a node's own VecEnvConfig choices (the actor's resets_per_step, ...)."""
        from serl_gs import tasks

        return tasks.make_vec(self.env, num_envs, seed=seed, **self.make_kwargs(), **vec_options)

    def observation_spec(self) -> tuple[dict[str, jax.ShapeDtypeStruct], int]:
        """(per-env observation shapes, action size) from the task and its camera list, the same as the vector
        env's, without building physics or a renderer (the learner needs nothing else from its env)."""
        from serl_gs.render.cameras import camera_rig
        from serl_gs.tasks import make_task_for

        task = make_task_for(self.env, self.obs_mode, **self.task_kwargs())
        spec = dict(task.observation_shapes())
        if self.obs_mode == "pixels":
            size = self.image_size
            for name in camera_rig(task.mj_model, tuple(self.cameras), size, size).names:
                spec[PIXELS_PREFIX + name] = jax.ShapeDtypeStruct((size, size, 3), np.uint8)
                if self.depth:
                    spec[DEPTH_PREFIX + name] = jax.ShapeDtypeStruct((size, size, 1), np.uint16)
                if self.segmentation:
                    spec[SEGMENTATION_PREFIX + name] = jax.ShapeDtypeStruct((size, size, 1), np.uint8)
        return spec, int(task.action_size)


def obs_spec_of(vec_env) -> dict[str, jax.ShapeDtypeStruct]:
    """Per-env observation shapes of a vector env, as the agent's networks want them."""
    return {k: jax.ShapeDtypeStruct(s.shape, s.dtype) for k, s in vec_env.single_observation_space.items()}
