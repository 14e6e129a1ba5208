"""What `keep_freed_memory` (serl_gs.cpu_memory) does to XLA:CPU's per-call buffers, run after run: page faults
and heap growth over CALLS calls of a jitted function with a 64 MB temporary, each run in a fresh process, with
and without it, alternating (tests/test_cpu_memory.py runs the same probe once each way).

    python -m benchmarks.bench_cpu_memory --runs 24       # about 10 s a run on an idle 2-core machine

Per run one JSON line: page faults beyond the heap's growth (with it: every fault is heap growth, so ~0), with
the faults, the growth in 64 MB blocks and the run's mode in `config`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks._report import emit, log

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


def probe(mode: str, calls: int = CALLS) -> dict:
    """One fresh process ("keep": keep_freed_memory first; "default": glibc's defaults): its faults and heap
    growth, in pages, over `calls` calls after 3 warm-up calls."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", PROBE, mode, str(calls)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the {mode} probe exited with {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=24, help="fresh processes with keep_freed_memory")
    p.add_argument("--default_every", type=int, default=4, help="one run without it after this many with it")
    args = p.parse_args()
    for run in range(args.runs):
        modes = ["keep"] + (["default"] if run % args.default_every == 0 else [])
        for mode in modes:
            r = probe(mode)
            growth = max(r["heap_growth_pages"], 0)
            emit("cpu_memory", "page_faults_beyond_heap_growth", r["faults"] - growth, "pages",
                 config={"mode": mode, "run": run, "calls": CALLS, "faults": r["faults"],
                         "heap_growth_pages": r["heap_growth_pages"],
                         "heap_growth_blocks": round(r["heap_growth_pages"] / BLOCK_PAGES, 2),
                         "load_avg_1min": round(os.getloadavg()[0], 2)}, quick=False)  # fmt: skip
        log(f"run {run + 1}/{args.runs} done")


if __name__ == "__main__":
    main()
