"""The task registry: env ids -> (task class, config class, pixel defaults), and their gymnasium registration.

A task module registers its tasks on import with `register_task`; nothing here imports a task module by an
import statement. An id names its module the way gymnasium's own `make` does:

- `"my_tasks:SwingUp-v0"` imports `my_tasks` (which calls `register_task("SwingUp-v0", ...)`), then looks the
  id up: a user's task runs through every node and launcher without editing serl_gs (`--env my_tasks:SwingUp-v0`).
- `"serl_gs/PandaPickCube-v0"`: ids in a namespace of `DEFAULT_TASK_MODULES` load that module by name when they
  are not registered yet; `serl_gs/` is the checkout's own `envs` package. A bare `"PandaPickCube-v0"` means
  `"serl_gs/PandaPickCube-v0"` when no other task has that name.

Why a name as data and not an import or an entry point: the library must import and test without the tasks
(they sit above it, DESIGN.md's layout), the default tasks are not an installed distribution that could
declare entry points (pyproject installs only `serl_gs`), and the mapping is exactly gymnasium's `module:id`
with a default module per namespace: one place says where the default ids come from, and a user's module uses
the same path.

Once registered, `gymnasium.make_vec(env_id, num_envs=N, ...)` gives a batched `SerlVectorEnv` and
`gymnasium.make(env_id)` a single `gym.Env`. Keyword arguments other than the vector env's own (VecEnvConfig:
`physics`, `mjx_impl`, `array_backend`, `seed`, `obs_mode`, `render_backend`, `image_size`, `cameras`,
`render_mode`, `render_camera`, `render_size`, `scene`, `resets_per_step`) go to the task's config dataclass.
`max_episode_steps` is the episode length (`episode_length`): `make_vec` passes it to the vector entry point;
`make` applies gymnasium's TimeLimit with it.

The entry points are importable functions named by string (`serl_gs.tasks:single_entry_point`) and the spec's
kwargs name the task's module, so an env spec pickles without code and a spawned worker
(`AsyncVectorEnv(..., context="spawn")`) builds the env from the spec alone.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import MappingProxyType
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import parse_env_id

from serl_gs.env_options import ObsMode
from serl_gs.mjx_env import Task
from serl_gs.single_env import FORK_MESSAGE, ForkRefusedEnv, SingleEnv, forked_from_jax
from serl_gs.vec_env import SerlVectorEnv, VecEnvConfig

# Namespace -> the module whose import registers its ids (imported by name, on first use of such an id).
DEFAULT_TASK_MODULES = MappingProxyType({"serl_gs": "envs"})
DEFAULT_NAMESPACE = "serl_gs"


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    task_cls: type[Task]
    config_cls: type  # a dataclass; `task_cls(config_cls(**options))` builds the task
    # Options that change when the policy sees pixels (applied under the user's), e.g. hiding the object's
    # position from the state so the policy must find it in the images.
    pixel_defaults: MappingProxyType
    module: str  # the module whose import registers this id (what a spawned worker imports)


_TASKS: dict[str, TaskEntry] = {}
_VEC_KEYS = {f.name for f in dataclasses.fields(VecEnvConfig)} - {"num_envs"}


def register_task(
    env_id: str,
    task_cls: type[Task],
    config_cls: type,
    *,
    pixel_defaults: dict[str, Any] | None = None,
    module: str | None = None,
) -> None:
    """Registers a task under `env_id` (gymnasium's `[namespace/]Name-vN`) here and with gymnasium.

    `config_cls`: a dataclass whose fields are the task's options (`episode_length` and `action_repeat` are the
    ones the nodes set). `module`: the module whose import registers this id (default: the task class's).
    Registering the same classes again is a no-op (a module imported twice); another task under a taken id
    is an error."""
    if not isinstance(env_id, str) or ":" in env_id:
        raise ValueError(f"env_id must be gymnasium's '[namespace/]Name-vN' without a module, got {env_id!r}")
    try:
        parse_env_id(env_id)
    except gym.error.Error as e:
        raise ValueError(f"env_id {env_id!r} is not a gymnasium id ({e})") from e
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise ValueError(f"task_cls of {env_id!r} must be a subclass of serl_gs.mjx_env.Task, got {task_cls!r}")
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise ValueError(f"config_cls of {env_id!r} must be a dataclass, got {config_cls!r}")
    pixel_defaults = dict(pixel_defaults or {})
    unknown = sorted(set(pixel_defaults) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise ValueError(f"pixel_defaults of {env_id!r} name options {unknown} that {config_cls.__name__} lacks")
    entry = TaskEntry(task_cls, config_cls, MappingProxyType(pixel_defaults), module or task_cls.__module__)
    old = _TASKS.get(env_id)
    if old is not None:
        if (old.task_cls, old.config_cls) != (task_cls, config_cls):
            raise ValueError(f"{env_id!r} is already registered to {old.task_cls.__qualname__} from {old.module}")
        return
    if env_id in gym.registry:
        raise ValueError(f"{env_id!r} is already a gymnasium id (entry point {gym.registry[env_id].entry_point})")
    _TASKS[env_id] = entry
    gym.register(
        id=env_id,
        entry_point=f"{__name__}:single_entry_point",
        vector_entry_point=f"{__name__}:vector_entry_point",
        kwargs={"task": env_id, "task_module": entry.module},
        disable_env_checker=False,
    )


def registered_tasks() -> list[str]:
    """The ids registered so far (ids of `DEFAULT_TASK_MODULES` appear once one of them was used)."""
    return sorted(_TASKS)


def _import_task_module(module: str, why: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise  # the module exists and failed inside: its own error says more
        hint = " (the top-level envs/ of a serl_gs checkout: run from its root or put it on PYTHONPATH)"
        raise ValueError(f"{why}, but module {module!r} is not importable{hint if module == 'envs' else ''}") from e


def resolve_task(env_id: str) -> str:
    """The registered id that `env_id` names, importing its module first where the id names one (see the
    module docstring). Unknown ids raise a ValueError that lists the registered ones."""
    if not isinstance(env_id, str):
        raise ValueError(f"a task id must be a string, got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        _import_task_module(module, f"task {env_id!r} names module {module!r}")
    if name not in _TASKS:
        namespace = name.split("/", 1)[0] if "/" in name else DEFAULT_NAMESPACE
        default = DEFAULT_TASK_MODULES.get(namespace)
        if default is not None:
            _import_task_module(default, f"ids in the {namespace}/ namespace come from module {default!r}")
        if "/" not in name and name not in _TASKS and f"{DEFAULT_NAMESPACE}/{name}" in _TASKS:
            name = f"{DEFAULT_NAMESPACE}/{name}"
    if name not in _TASKS:
        where = f" after importing {module!r}" if module else ""
        raise ValueError(
            f"unknown task {name!r}{where}; registered: {registered_tasks()} (a task of your own: "
            "register it with serl_gs.tasks.register_task in your module and name it as 'your_module:Name-v0')"
        )
    return name


def task_entry(env_id: str) -> TaskEntry:
    return _TASKS[resolve_task(env_id)]


def make_task(env_id: str, **config_kwargs: Any) -> Task:
    """Builds a task by id; unknown ids or options raise."""
    name = resolve_task(env_id)
    entry = _TASKS[name]
    valid = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(config_kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; valid: {sorted(valid)}")
    return entry.task_cls(entry.config_cls(**config_kwargs))


def make_task_for(env_id: str, obs_mode: ObsMode = "state", **config_kwargs: Any) -> Task:
    """`make_task` for a policy that sees `obs_mode`: with pixels, the task's pixel defaults come first."""
    if obs_mode == "pixels":
        config_kwargs = {**task_entry(env_id).pixel_defaults, **config_kwargs}
    return make_task(env_id, **config_kwargs)


def make_vector_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> SerlVectorEnv:
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
    return SerlVectorEnv(make_task_for(env_id, config.obs_mode, **kwargs), config)


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """`gymnasium.make_vec` for any id `resolve_task` accepts (the nodes' way in)."""
    name = resolve_task(env_id)
    return gym.make_vec(name, num_envs=num_envs, **kwargs)


# Spaces of every single env built in this process, by options: a forked child (which must not touch JAX)
# hands them to ForkRefusedEnv, so AsyncVectorEnv's space check passes and its first reset gives the message.
_SPACES: dict[str, tuple[gym.Space, gym.Space]] = {}


def single_entry_point(task: str, task_module: str | None = None, **kwargs: Any) -> gym.Env:
    """`gymnasium.make`'s entry point: one env, numpy in and out. In a process forked from one where JAX was
    running it returns an env that refuses to run (JAX deadlocks after fork; see serl_gs.single_env)."""
    key = repr((task, sorted(kwargs.items(), key=lambda item: item[0])))
    if forked_from_jax():
        if key not in _SPACES:
            raise RuntimeError(FORK_MESSAGE)
        return ForkRefusedEnv(*_SPACES[key])
    if task not in _TASKS and task_module is not None:  # a spawned worker that has only the spec
        _import_task_module(task_module, f"task {task!r} is registered by module {task_module!r}")
    env = SingleEnv(make_vector_env(task, 1, array_backend="numpy", **kwargs))
    _SPACES[key] = (env.observation_space, env.action_space)
    return env


# gymnasium.make reads the entry point's render modes: "human" and "rgb_array_list" become wrappers over these.
single_entry_point.metadata = SingleEnv.metadata


def vector_entry_point(task: str, task_module: str | None = None, num_envs: int = 1, **kwargs: Any) -> SerlVectorEnv:
    """`gymnasium.make_vec`'s entry point."""
    if task not in _TASKS and task_module is not None:
        _import_task_module(task_module, f"task {task!r} is registered by module {task_module!r}")
    return make_vector_env(task, num_envs, **kwargs)
