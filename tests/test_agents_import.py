"""Importing the agent and replay modules initialises no JAX backend and loads no torch (nothing heavy)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import serl_gs.agents.config, serl_gs.agents.learning, serl_gs.agents.losses, serl_gs.agents.networks
import serl_gs.agents.pretrained, serl_gs.data.augment, serl_gs.data.records, serl_gs.data.replay
from jax._src import xla_bridge
import sys
assert not xla_bridge._backends, f"backends initialised at import: {list(xla_bridge._backends)}"
assert "torch" not in sys.modules and "gsplat" not in sys.modules
"""


def test_imports_are_light():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
