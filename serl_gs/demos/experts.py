"""Scripted experts by task id, as `expert(vec, obs) -> actions [N, A]`: a task's module registers its expert
(envs/experts.py does for the serl_gs/ tasks), demo sources and interventions look it up here, so the library
never imports the tasks above it (the same way serl_gs.tasks resolves ids)."""

from __future__ import annotations

from collections.abc import Callable

from serl_gs.tasks import resolve_task

_EXPERTS: dict[str, Callable] = {}


def register_expert(task_id: str, expert: Callable) -> None:
    """Makes `expert` the scripted expert of the registered task `task_id`."""
    if not callable(expert):
        raise ValueError(f"the expert of {task_id!r} must be callable, got {expert!r}")
    _EXPERTS[task_id] = expert


def expert_for(env_id: str) -> Callable:
    """The scripted expert of `env_id` (importing the task's module first, which registers it); a ValueError naming
    the envs that have one."""
    name = resolve_task(env_id)
    if name not in _EXPERTS:
        raise ValueError(f"no scripted expert for env {env_id!r}; envs with one: {sorted(_EXPERTS)}")
    return _EXPERTS[name]
