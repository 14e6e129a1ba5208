"""Data parallel over devices (serl_gs.agents.sharding) on virtual CPU devices, each check in a subprocess: the
device count is fixed when JAX starts (tests/sharded_checks.py holds the checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_check(devices: int, *args: str) -> str:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "tests.sharded_checks", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return out.stdout


@pytest.mark.slow  # two compiles of a tiny update (SAC, DrQ) on one and on four devices
def test_a_sharded_update_equals_the_single_device_update_on_4_virtual_devices():
    assert "update_equivalence ok" in _run_check(4, "update_equivalence")


@pytest.mark.slow  # a learner and an actor, as tests/test_nodes_learner.py, with the update on 2 devices
def test_the_learner_node_trains_on_2_virtual_devices(tmp_path):
    assert "learner_node ok" in _run_check(2, "learner_node", str(tmp_path / "run"))
