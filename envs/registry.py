"""Task registry: ids -> task classes and configs, and their gymnasium registration.

`import envs` registers every task as `serl_gs/<Name>-v0`, so
`gymnasium.make_vec("serl_gs/PandaPickCube-v0", num_envs=N, ...)` gives a batched `SerlVectorEnv` and
`gymnasium.make("serl_gs/PandaPickCube-v0")` a single `gym.Env`. Keyword arguments other than the vector
env's own (VecEnvConfig: `physics`, `array_backend`, `seed`, `obs_mode`, `render_backend`, `image_size`,
`cameras`) go to the task's config dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from envs.cartpole import CartpoleBalance, CartpoleConfig
from envs.panda_pick_cube import PandaPickCube, PandaPickCubeConfig
from serl_gs.mjx_env import Task
from serl_gs.single_env import SingleEnv
from serl_gs.vec_env import SerlVectorEnv, VecEnvConfig

NAMESPACE = "serl_gs"
TASKS: dict[str, tuple[type[Task], type]] = {
    "PandaPickCube-v0": (PandaPickCube, PandaPickCubeConfig),
    "CartpoleBalance-v0": (CartpoleBalance, CartpoleConfig),
}
# Task options that change when the policy sees pixels: with images, the cube's position is for it to find.
PIXEL_DEFAULTS: dict[str, dict[str, Any]] = {"PandaPickCube-v0": {"cube_in_state": False}}
_VEC_KEYS = {f.name for f in dataclasses.fields(VecEnvConfig)} - {"num_envs"}


def task_names() -> list[str]:
    return sorted(TASKS)


def make_task(name: str, **config_kwargs: Any) -> Task:
    """Builds a task by name (with or without the `serl_gs/` prefix); unknown names or options raise."""
    name = name.removeprefix(f"{NAMESPACE}/")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered: {task_names()}")
    task_cls, config_cls = TASKS[name]
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config_kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; valid: {sorted(valid)}")
    return task_cls(config_cls(**config_kwargs))


def make_vector_env(name: str, num_envs: int = 1, **kwargs: Any) -> SerlVectorEnv:
    """The vector entry point: vector-env options go to VecEnvConfig, the rest to the task config."""
    kwargs.pop("max_episode_steps", None)  # gymnasium adds it; episode_length is the task's own option
    vec_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _VEC_KEYS}
    if "cameras" in vec_kwargs:
        vec_kwargs["cameras"] = tuple(vec_kwargs["cameras"])
    config = VecEnvConfig(num_envs=num_envs, **vec_kwargs)
    return SerlVectorEnv(make_task_for(name, config.obs_mode, **kwargs), config)


def make_task_for(name: str, obs_mode: str = "state", **config_kwargs: Any) -> Task:
    """`make_task` for a policy that sees `obs_mode`: with pixels, the task's PIXEL_DEFAULTS come first."""
    if obs_mode == "pixels":
        config_kwargs = {**PIXEL_DEFAULTS.get(name.removeprefix(f"{NAMESPACE}/"), {}), **config_kwargs}
    return make_task(name, **config_kwargs)


def register_all() -> None:
    for name in TASKS:
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=lambda _name=name, **kw: SingleEnv(
                make_vector_env(_name, 1, array_backend="numpy", **kw)
            ),
            vector_entry_point=lambda _name=name, **kw: make_vector_env(_name, **kw),
            disable_env_checker=False,
        )
