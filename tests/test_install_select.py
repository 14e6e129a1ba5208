"""Which package set the launchers install (scripts/device_select.sh, sourced by scripts/venv.sh): a fake
`nvidia-smi` on PATH stands in for the GPU machine; no venv is built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")


def _bin(tmp_path: Path, driver: str | None = None, broken: bool = False) -> Path:
    """A PATH folder with `head` and, if asked, a fake nvidia-smi reporting `driver` (or failing)."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    (folder / "head").symlink_to(shutil.which("head"))
    if driver is not None or broken:
        body = "echo 'NVIDIA-SMI has failed' >&2; exit 9" if broken else f'echo "{driver}"; echo "{driver}"'
        smi = folder / "nvidia-smi"
        smi.write_text(f"#!{BASH}\n{body}\n")
        smi.chmod(0o755)
    return folder


def _select(folder: Path, device: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(folder), "HOME": os.environ.get("HOME", "/tmp")}
    if device is not None:
        env["SERL_GS_DEVICE"] = device
    return subprocess.run(
        [BASH, str(ROOT / "scripts/device_select.sh")], env=env, capture_output=True, text=True, timeout=30
    )


def _chosen(folder: Path, device: str | None = None) -> tuple[str, str]:
    proc = _select(folder, device)
    assert proc.returncode == 0, proc.stderr
    chosen, reason = proc.stdout.rstrip("\n").split("\t")
    return chosen, reason


@pytest.mark.parametrize(
    "driver, want", [("580.65.06", "cuda13"), ("590.10", "cuda13"), ("575.57.08", "cuda12"), ("525.60.13", "cuda12")]
)
def test_a_working_nvidia_smi_picks_cuda_12_or_13_by_the_driver(tmp_path, driver, want):
    chosen, reason = _chosen(_bin(tmp_path, driver))
    assert chosen == want
    assert f"driver {driver}" in reason and reason.startswith("auto:")


def test_a_many_gpu_nvidia_smi_is_read_under_pipefail_as_the_launchers_run_it(tmp_path):
    # One line per GPU, the later ones after a pause: a reader that stops after the first line (head -n1) would
    # kill nvidia-smi with SIGPIPE, and under `set -o pipefail` the machine read as a CPU one (a CI failure).
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!{BASH}\necho 580.65.06\nsleep 0.2\nfor i in 1 2 3 4 5 6 7; do echo 580.65.06; done\n")
    smi.chmod(0o755)
    script = 'set -euo pipefail; source scripts/device_select.sh; serl_gs_select_device; echo "$SERL_GS_DEVICE_SET"'
    proc = subprocess.run(
        [BASH, "-c", script], cwd=ROOT, env={"PATH": f"{folder}:/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "cuda13", (proc.stdout, proc.stderr)


def test_no_nvidia_smi_or_a_failing_one_picks_the_cpu_set(tmp_path):
    chosen, reason = _chosen(_bin(tmp_path))
    assert (chosen, reason.split(" (")[0]) == ("cpu", "auto: no nvidia-smi")
    chosen, reason = _chosen(_bin(tmp_path / "broken", broken=True))
    assert chosen == "cpu" and "reports no driver version" in reason


def test_serl_gs_device_overrides_the_probe(tmp_path):
    gpu = _bin(tmp_path, "580.65.06")
    assert _chosen(gpu, "cpu") == ("cpu", "SERL_GS_DEVICE=cpu")
    assert _chosen(gpu, "cuda12") == ("cuda12", "SERL_GS_DEVICE=cuda12")
    assert _chosen(_bin(tmp_path / "none"), "cuda13") == ("cuda13", "SERL_GS_DEVICE=cuda13")
    assert _chosen(gpu, "cuda")[0] == "cuda13"  # cuda: the major still follows the driver


@pytest.mark.parametrize(
    "driver, device, message",
    [
        (None, "cuda", "error: SERL_GS_DEVICE=cuda, but nvidia-smi is missing"),
        ("470.82.01", None, "error: NVIDIA driver 470.82.01 is older than CUDA 12 needs (525+)"),
        (None, "rocm", "error: SERL_GS_DEVICE=rocm is not one of auto, cpu, cuda, cuda12, cuda13"),
    ],
)
def test_what_cannot_be_chosen_is_one_line_and_status_2(tmp_path, driver, device, message):
    proc = _select(_bin(tmp_path, driver), device)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr


def test_each_set_has_its_file_pinned_to_requirements_txt_versions_and_its_own_venv_key():
    pins = dict(
        line.split("#")[0].strip().split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line
    )
    keys = set()
    for cuda in ("cuda12", "cuda13"):
        lines = [line.split("#")[0].strip() for line in (ROOT / f"requirements-{cuda}.txt").read_text().splitlines()]
        assert "-r requirements.txt" in lines
        assert f"jax-{cuda}-plugin[with-cuda]=={pins['jax']}" in lines and f"jax-{cuda}-pjrt=={pins['jax']}" in lines
        torch = [line for line in lines if line.startswith("torch==")]
        assert all(line.split("==")[1].split("+")[0] == pins["torch"] for line in torch)
    for chosen in ("cpu", "cuda12", "cuda13"):
        proc = subprocess.run(
            [BASH, "-c", f'source scripts/device_select.sh && serl_gs_venv_key "$PWD" {chosen}'],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        keys.add(proc.stdout.strip())
    assert len(keys) == 3


def test_the_gpu_bundle_packs_requirements_txt_pins_only():
    proc = subprocess.run(
        [BASH, "scripts/gpu_bundle.sh", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    packed = proc.stdout.split()
    pinned = {line.split("#")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    assert len(packed) >= 9 and all(line.lower() in pinned for line in packed), packed


def test_run_demo_on_a_gpu_machine_runs_the_gpu_main_job(tmp_path):
    # A fake nvidia-smi makes it a GPU machine; an invalid budget makes benchmarks.gpu_learn stop at once, which
    # shows the demo went there (the venv is used as it is: nothing is installed).
    folder = _bin(tmp_path, "580.65.06")
    env = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", "SERL_GS_VENV_AS_IS": "1"}
    env["SERL_GS_VENV"] = env.get("SERL_GS_VENV", str(Path(sys.executable).parents[1]))
    out = subprocess.run(
        [str(ROOT / "run_demo.sh"), "--budget_s", "-1"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and "--budget_s must be positive, got -1.0" in out.stderr, out.stderr
    assert "[demo] the cuda13 set: the GPU main job (scripts/gpu_learn.sh" in out.stdout, out.stdout
