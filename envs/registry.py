"""Task registry: ids -> task classes and configs, and their gymnasium registration.

`import envs` registers every task as `serl_gs/<Name>-v0`, so
`gymnasium.make_vec("serl_gs/PandaPickCube-v0", num_envs=N, ...)` gives a batched `SerlVectorEnv` and
`gymnasium.make("serl_gs/PandaPickCube-v0")` a single `gym.Env`. Keyword arguments other than the vector
env's own (VecEnvConfig: `physics`, `array_backend`, `seed`, `obs_mode`, `render_backend`, `image_size`,
`cameras`, `render_mode`, `render_camera`, `render_size`) go to the task's config dataclass.
`max_episode_steps` is the episode length (`episode_length`): `make_vec` passes it to the vector entry point;
`make` applies gymnasium's TimeLimit with it.

The entry points are importable functions named by string (`envs.registry:single_entry_point`), so an env spec
pickles without code and a spawned worker (`AsyncVectorEnv(..., context="spawn")`) builds the env from the spec
alone: `gymnasium.make` imports this module by that name, which registers the tasks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from envs.cartpole import CartpoleBalance, CartpoleConfig
from envs.panda_pick_cube import PandaPickCube, PandaPickCubeConfig
from serl_gs.mjx_env import Task
from serl_gs.single_env import FORK_MESSAGE, ForkRefusedEnv, SingleEnv, forked_from_jax
from serl_gs.vec_env import SerlVectorEnv, VecEnvConfig

NAMESPACE = "serl_gs"
TASKS: dict[str, tuple[type[Task], type]] = {
    "PandaPickCube-v0": (PandaPickCube, PandaPickCubeConfig),
    "CartpoleBalance-v0": (CartpoleBalance, CartpoleConfig),
}
# Task options that change when the policy sees pixels: with images, the cube's position is for it to find, and
# the cartpole's state is for it to infer.
PIXEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "PandaPickCube-v0": {"cube_in_state": False},
    "CartpoleBalance-v0": {"state_in_obs": False},  # pixels only, DrQ's setting
}
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
    steps = kwargs.pop("max_episode_steps", None)
    if steps is not None:
        if kwargs.get("episode_length", steps) != steps:
            raise ValueError(
                f"max_episode_steps={steps!r} and episode_length={kwargs['episode_length']!r} disagree; "
                "give one of them"
            )
        kwargs["episode_length"] = steps
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


# Spaces of every single env built in this process, by options: a forked child (which must not touch JAX)
# hands them to ForkRefusedEnv, so AsyncVectorEnv's space check passes and its first reset gives the message.
_SPACES: dict[str, tuple[gym.Space, gym.Space]] = {}


def single_entry_point(task: str, **kwargs: Any) -> gym.Env:
    """`gymnasium.make`'s entry point: one env, numpy in and out. In a process forked from one where JAX was
    running it returns an env that refuses to run (JAX deadlocks after fork; see serl_gs.single_env)."""
    key = repr((task, sorted(kwargs.items(), key=lambda item: item[0])))
    if forked_from_jax():
        if key not in _SPACES:
            raise RuntimeError(FORK_MESSAGE)
        return ForkRefusedEnv(*_SPACES[key])
    env = SingleEnv(make_vector_env(task, 1, array_backend="numpy", **kwargs))
    _SPACES[key] = (env.observation_space, env.action_space)
    return env


# gymnasium.make reads the entry point's render modes: "human" and "rgb_array_list" become wrappers over these.
single_entry_point.metadata = SingleEnv.metadata


def vector_entry_point(task: str, num_envs: int = 1, **kwargs: Any) -> SerlVectorEnv:
    """`gymnasium.make_vec`'s entry point."""
    return make_vector_env(task, num_envs, **kwargs)


def register_all() -> None:
    for name in TASKS:
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=f"{__name__}:single_entry_point",
            vector_entry_point=f"{__name__}:vector_entry_point",
            kwargs={"task": name},
            disable_env_checker=False,
        )
