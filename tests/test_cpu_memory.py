"""keep_freed_memory: XLA:CPU's large per-call buffers stop costing fresh pages on every call."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
from serl_gs.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)  # the [4096, 4096] float32 product between: a 64 MB temporary
x = jnp.ones((4096, 8), jnp.float32)
for _ in range(3):
    f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def page_faults_per_call(mode: str) -> float:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two fresh JAX processes
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_keep_freed_memory_stops_page_faults_on_large_temporaries():
    default, kept = page_faults_per_call("default"), page_faults_per_call("keep")
    assert default > 10_000  # 64 MB of fresh 4 kB pages per call
    assert kept < default / 3, (default, kept)
