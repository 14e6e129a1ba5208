"""keep_freed_memory: memory XLA:CPU frees stays in the process, so its large per-call buffers stop costing fresh pages.

What it guarantees is an accounting, not a per-call count: with it, every page fault over many calls is a page
of heap growth (glibc gives nothing back), and the heap stops growing after a few blocks. When the heap grows
(a freed 64 MB block split by small allocations made between calls, so the next call's block does not fit) varies
from run to run, so a per-call count over a few calls does too (0 to 3 blocks of 16k faults over 5 calls, measured):
the test compares faults with heap growth instead. Without it every call faults its 64 MB afresh.
Measured over 12 runs of 20 calls (2026-12-07, 2-core machine): with it, faults = heap growth + 0 to 53 pages,
growth 1 to 6 blocks; without it 327.8k faults (16.4k per call).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, resource, sys
from serl_gs.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
import jax, jax.numpy as jnp

libc = ctypes.CDLL("libc.so.6")
wide = hasattr(libc, "mallinfo2")  # glibc >= 2.33; mallinfo's ints suffice below 2 GB

class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t if wide else ctypes.c_int) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

mallinfo = libc.mallinfo2 if wide else libc.mallinfo
mallinfo.restype = MallInfo

def heap_pages():  # what glibc holds from the OS: its heap (sbrk) and its mmap()ed blocks
    info = mallinfo()
    return (info.arena + info.hblkhd) // resource.getpagesize()

f = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)  # the [4096, 4096] float32 product between: a 64 MB temporary
x = jnp.ones((4096, 8), jnp.float32)
for _ in range(3):
    f(x).block_until_ready()
pages, faults = heap_pages(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    f(x).block_until_ready()
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                  "heap_growth_pages": heap_pages() - pages}))
"""

CALLS = 20
BLOCK_PAGES = (64 << 20) // 4096  # the temporary, in 4 kB pages


def probe(mode: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", PROBE, mode, str(CALLS)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two fresh JAX processes
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_keep_freed_memory_page_faults_only_where_the_heap_grows():
    default, kept = probe("default"), probe("keep")
    # Without it: the block goes back to the OS after every call and is faulted in anew by the next one
    # (the heap's size at the end differs from its start by at most the block in flight then).
    assert default["faults"] - max(default["heap_growth_pages"], 0) > CALLS * BLOCK_PAGES * 0.8, default
    # With it: nothing goes back, so every fault is a page the heap grew by (plus a little of Python's own)...
    assert kept["faults"] <= kept["heap_growth_pages"] + 1_000, kept
    # ...and freed blocks are reused: a leak would grow by a block per call (measured: 1 to 6 blocks over 20 calls,
    # 1 and 4 over 300: the heap stops growing).
    assert kept["heap_growth_pages"] < CALLS * BLOCK_PAGES * 0.75, kept
