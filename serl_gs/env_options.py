"""The choices of an env batch that every layer names (physics path, MJX implementation, observation mode), and
the resolvers of their `auto`. A module of its own so configs can type these fields without importing the
vector env (gymnasium), the batches or the render stage."""

from __future__ import annotations

from typing import Literal

import jax

PhysicsPath = Literal["auto", "mjx", "mujoco"]
MjxImpl = Literal["jax", "warp"]
ObsMode = Literal["state", "pixels"]
PHYSICS_PATHS = ("auto", "mjx", "mujoco")
MJX_IMPLS = ("jax", "warp")
MJX_IMPL_CHOICES = ("auto", *MJX_IMPLS)
OBS_MODES = ("state", "pixels")


def import_mjx():
    """`mujoco.mjx`, imported on first use (it pulls in more JAX than `import serl_gs` should). Its import
    prints notes about optional backends (warp) on stdout; they go to stderr so stdout stays clean for
    tools that print JSON lines."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        from mujoco import mjx
    return mjx


def warp_installed() -> bool:
    """Whether MJX's Warp implementation can run here (warp-lang importable)."""
    import_mjx()
    from mujoco.mjx import warp as mjx_warp

    if mjx_warp.WARP_INSTALLED:
        # Warp logs its start and every kernel module it loads at INFO, on stdout, where benchmarks print JSON.
        wp = mjx_warp.warp
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
    return bool(mjx_warp.WARP_INSTALLED)


def resolve_physics(physics: PhysicsPath) -> Literal["mjx", "mujoco"]:
    """`auto` picks MJX where JAX has a GPU and CPU MuJoCo otherwise (docs/physics-paths.md)."""
    if physics not in PHYSICS_PATHS:
        raise ValueError(f"physics must be one of {PHYSICS_PATHS}, got {physics!r}")
    if physics != "auto":
        return physics
    return "mjx" if jax.default_backend() == "gpu" else "mujoco"


def resolve_mjx_impl(impl: MjxImpl | Literal["auto"]) -> MjxImpl:
    """`auto` picks MJX-Warp where warp-lang is installed: it is MuJoCo C's physics (MJX-JAX parts ways under
    saturated actuators, docs/physics-paths.md) and on a CPU it is hundreds of times faster than MJX-JAX."""
    if impl not in MJX_IMPL_CHOICES:
        raise ValueError(f"mjx_impl must be one of {MJX_IMPL_CHOICES}, got {impl!r}")
    if impl != "auto":
        return impl
    return "warp" if warp_installed() else "jax"
