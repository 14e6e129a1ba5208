"""GPU paths that cannot run stop with one line saying what to install; each `auto` choice is one line; CPU-only
tuning stays off GPU nodes. The machine is faked by replacing serl_gs.gpu_paths' probes, never the libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serl_gs import gpu_paths
from serl_gs.gpu_paths import GpuPathUnavailable, check_gpu_paths
from serl_gs.nodes.env_spec import EnvSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def machine(monkeypatch):
    """Sets what the probes report: machine(nvidia=..., jax_gpu=..., torch_cuda=..., plugin=...)."""
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)

    def fake(nvidia=False, jax_gpu=False, torch_cuda=False, plugin=False, gsplat_ops=False):
        monkeypatch.setattr(gpu_paths, "nvidia_gpu_present", lambda: nvidia)
        monkeypatch.setattr(gpu_paths, "jax_sees_gpu", lambda: jax_gpu)
        monkeypatch.setattr(gpu_paths, "torch_sees_cuda", lambda: torch_cuda)
        monkeypatch.setattr(gpu_paths, "jax_cuda_plugin_installed", lambda: plugin)
        monkeypatch.setattr(gpu_paths, "_gsplat_ops_loaded", lambda: gsplat_ops)

    return fake


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_mjx_on_a_gpu_machine_whose_jax_sees_no_gpu_says_what_to_install(machine, monkeypatch):
    machine(nvidia=True, jax_gpu=False)
    with pytest.raises(GpuPathUnavailable) as err:
        check_gpu_paths("mjx", "auto", renders=False)
    line = _one_line(err)
    assert line.startswith("--physics mjx: this machine has an NVIDIA GPU (nvidia-smi) but JAX ")
    assert "install the CUDA set (SERL_GS_DEVICE=cuda" in line and "or pass --physics mujoco" in line
    assert isinstance(err.value, ValueError)  # the node mains print ValueErrors as one line and exit 2
    check_gpu_paths("mujoco", "auto", renders=False)
    check_gpu_paths("auto", "auto", renders=False)  # auto is not asking for the GPU: it logs its choice instead
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    check_gpu_paths("mjx", "auto", renders=False)  # MJX on the CPU on purpose


@pytest.mark.parametrize("nvidia, jax_gpu", [(False, False), (True, True)])
def test_mjx_runs_where_jax_sees_the_gpu_or_there_is_none(machine, nvidia, jax_gpu):
    machine(nvidia=nvidia, jax_gpu=jax_gpu)  # no GPU: MJX on the CPU (MJX-Warp in CI) is what was asked for
    check_gpu_paths("mjx", "reference", renders=True)


@pytest.mark.parametrize("nvidia", [False, True])
def test_gsplat_without_cuda_torch_says_what_to_install(machine, nvidia):
    machine(nvidia=nvidia, torch_cuda=False)
    with pytest.raises(GpuPathUnavailable) as err:
        check_gpu_paths("auto", "gsplat", renders=True)
    line = _one_line(err)
    assert line.startswith("--render_backend gsplat needs CUDA, and torch ")
    assert ("has an NVIDIA GPU" if nvidia else "has no NVIDIA GPU") in line
    assert line.endswith("or pass --render_backend reference")
    check_gpu_paths("auto", "gsplat", renders=False)  # a state node renders nothing
    check_gpu_paths("auto", "reference", renders=True)
    machine(nvidia=nvidia, torch_cuda=True)
    check_gpu_paths("auto", "gsplat", renders=True)
    machine(nvidia=nvidia, torch_cuda=False, gsplat_ops=True)  # the stand-in's ops (CI's gsplat on a CPU)
    check_gpu_paths("auto", "gsplat", renders=True)


def test_cpu_only_tuning_stays_off_gpu_nodes(machine, monkeypatch):
    from serl_gs import cpu_memory
    from serl_gs.nodes.cli import apply_cpu_tuning

    calls = []
    monkeypatch.setattr(cpu_memory, "keep_freed_memory", lambda: calls.append(1) or True)
    machine(nvidia=True, plugin=True)
    assert gpu_paths.jax_may_use_gpu() and apply_cpu_tuning() is False and calls == []
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not gpu_paths.jax_may_use_gpu() and apply_cpu_tuning() is True and calls == [1]
    monkeypatch.delenv("JAX_PLATFORMS")
    for nvidia, plugin in ((True, False), (False, True)):
        machine(nvidia=nvidia, plugin=plugin)
        assert not gpu_paths.jax_may_use_gpu()


@pytest.mark.slow  # ~8 s on a quiet machine: a pixel env and an MJX-Warp one
def test_each_env_choice_is_one_line_saying_why(machine):
    machine(nvidia=True)  # a GPU machine whose JAX runs on the CPU: auto physics says so and what to install
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=8, render_backend="reference")
    vec = spec.make_vec(1, seed=0)
    try:
        lines = gpu_paths.env_choice_lines(spec, vec)
    finally:
        vec.close()
    assert lines == [
        "physics: mujoco (auto: JAX's backend is cpu, though an NVIDIA GPU is present: install the CUDA set "
        "(SERL_GS_DEVICE=cuda with any ./run_*.sh; docs/gpu.md))",
        "render backend: reference (requested)",
    ]
    machine(nvidia=False)
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", physics="mjx")
    vec = spec.make_vec(1, seed=0)
    try:
        lines = gpu_paths.env_choice_lines(spec, vec)
    finally:
        vec.close()
    assert lines == ["physics: mjx (requested)", "MJX implementation: warp (auto: warp-lang is installed)"]


def test_learner_choices_say_whether_auto_chose_them(machine):
    machine()
    assert gpu_paths.learner_choice_lines(10, 0, False, "auto") == [
        "JAX's backend is cpu",
        "updates per call: 10 (auto: min(publish_every, 2 x rate-limiter tolerance))",
        "scan unroll: scanned (auto: pixel agents unroll on XLA:CPU, scan elsewhere)",
    ]
    assert gpu_paths.learner_choice_lines(1, 1, True, "always")[1:] == [
        "updates per call: 1 (requested)",
        "scan unroll: unrolled (requested)",
    ]


@pytest.mark.slow  # ~10 s: the actor's imports
def test_an_actor_asking_for_gsplat_without_cuda_stops_with_one_line(tmp_path):
    # This machine has no CUDA torch: the real probes, no fakes.
    args = [sys.executable, "-m", "actors.actor", "--env", "serl_gs/CartpoleBalance-v0", "--obs_mode", "pixels",
            "--image_size", "8", "--render_backend", "gsplat", "--num_envs", "1", "--max_steps", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert out.returncode == 2, out.stdout[-1500:] + out.stderr[-1500:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --render_backend gsplat needs CUDA"), out.stderr
    assert "Traceback" not in out.stderr
