"""Whether the GPU paths a node asks for can run here: one line saying what to install when they cannot, and
one line per `auto` choice saying what it chose and why (docs/gpu.md).

A GPU machine whose packages are the CPU set (requirements.txt instead of requirements-cuda1X.txt) would
otherwise run `--physics mjx` on XLA:CPU, and fail deep inside torch for `--render_backend gsplat`, with nothing
saying why. The probes below are the only places that look at the machine, so tests fake a device list by
replacing them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serl_gs.nodes.env_spec import EnvSpec

INSTALL_HINT = "install the CUDA set (SERL_GS_DEVICE=cuda with any ./run_*.sh; docs/gpu.md)"
JAX_CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin")


class GpuPathUnavailable(ValueError):
    """A GPU path was asked for and cannot run here (the node mains print it as one line and exit with 2)."""


# ---- probes (tests replace these) -------------------------------------------------------------------------


@functools.cache
def nvidia_gpu_present() -> bool:
    """Whether `nvidia-smi` is there and lists a GPU: the machine has one, whatever our packages see."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def jax_sees_gpu() -> bool:
    import jax

    return jax.default_backend() == "gpu"


def torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def jax_cuda_plugin_installed() -> bool:
    """Whether a JAX CUDA plugin is installed, read from package metadata without starting JAX."""
    for name in JAX_CUDA_PLUGINS:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    return False


def _gsplat_ops_loaded() -> bool:
    """gsplat's ops already loaded without CUDA: a CPU port, or the tests' stand-in (tests/gsplat_standin.py)."""
    from serl_gs.render.gsplat_backend import ops_loaded

    return ops_loaded()


# ---- guards ------------------------------------------------------------------------------------------------


def jax_may_use_gpu() -> bool:
    """Whether this process's JAX will run on a GPU, decided before JAX starts (for CPU-only tuning that must
    be set first, serl_gs.cpu_memory): JAX_PLATFORMS allows it, a CUDA plugin is installed, a GPU is there."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in ("cuda", "gpu")):
        return False
    return jax_cuda_plugin_installed() and nvidia_gpu_present()


def _cpu_on_purpose() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    return bool(platforms) and not any(p in platforms for p in ("cuda", "gpu"))


def check_gpu_paths(physics: str, render_backend: str, renders: bool) -> None:
    """Raises `GpuPathUnavailable` (one line: what is missing, what to install, what to pass instead) when
    `--physics mjx` is asked for on a machine with an NVIDIA GPU that JAX does not see, or `--render_backend
    gsplat` where torch sees no CUDA (`renders`: the node renders, i.e. pixels or a video)."""
    if physics == "mjx" and nvidia_gpu_present() and not _cpu_on_purpose() and not jax_sees_gpu():
        import jax

        raise GpuPathUnavailable(
            f"--physics mjx: this machine has an NVIDIA GPU (nvidia-smi) but JAX {jax.__version__} sees none (its "
            f"backend is {jax.default_backend()}): {INSTALL_HINT}, or pass --physics mujoco (JAX_PLATFORMS=cpu runs "
            "MJX on the CPU on purpose)"
        )
    if renders and render_backend == "gsplat" and not torch_sees_cuda() and not _gsplat_ops_loaded():
        import torch

        where = "this machine has an NVIDIA GPU" if nvidia_gpu_present() else "this machine has no NVIDIA GPU"
        raise GpuPathUnavailable(
            f"--render_backend gsplat needs CUDA, and torch {torch.__version__} sees no CUDA device ({where}): "
            f"{INSTALL_HINT}, or pass --render_backend reference"
        )


# ---- what each `auto` chose ---------------------------------------------------------------------------------


def jax_backend_note() -> str:
    """JAX's backend, and the hint when a GPU is there that JAX does not see."""
    import jax

    backend = jax.default_backend()
    if backend != "gpu" and nvidia_gpu_present():
        return f"JAX's backend is {backend}, though an NVIDIA GPU is present: {INSTALL_HINT}"
    return f"JAX's backend is {backend}"


def env_choice_lines(spec: EnvSpec, vec) -> list[str]:
    """One line per env-side choice of a node: physics, MJX implementation (MJX only), render backend (pixels),
    each saying whether `auto` chose it and why."""
    lines = [f"physics: {vec.physics} ({'auto: ' + jax_backend_note() if spec.physics == 'auto' else 'requested'})"]
    if vec.physics == "mjx":
        asked = getattr(vec.config, "mjx_impl", "auto")
        why = "warp-lang is installed" if vec.mjx_impl == "warp" else "warp-lang is not installed"
        lines.append(f"MJX implementation: {vec.mjx_impl} ({'auto: ' + why if asked == 'auto' else 'requested'})")
    if vec.renderer is not None:
        lines.append(f"render backend: {vec.renderer.backend} ({vec.renderer.backend_reason})")
    return lines


def learner_choice_lines(updates_per_call: int, asked_updates_per_call: int, unrolled: bool, scan_unroll: str):
    """The learner's choices: JAX's backend, updates per jitted call, and whether the updates are unrolled."""
    auto_k = "1 where updates unroll" if unrolled else "min(publish_every, 2 x rate-limiter tolerance)"
    k_why = "requested" if asked_updates_per_call else f"auto: {auto_k}"
    u_why = "requested" if scan_unroll != "auto" else "auto: pixel agents unroll on XLA:CPU, scan elsewhere"
    return [
        jax_backend_note(),
        f"updates per call: {updates_per_call} ({k_why})",
        f"scan unroll: {'unrolled' if unrolled else 'scanned'} ({u_why})",
    ]
