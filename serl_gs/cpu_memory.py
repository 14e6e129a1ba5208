"""Keep freed memory in the process, so XLA:CPU's per-call buffers stop costing page faults.

XLA:CPU allocates each call's temporaries and outputs with malloc and frees them when the call ends. A DrQ update
at 64² needs hundreds of MB of them; glibc serves blocks that large with fresh mmap()s (always above 32 MB, and
from a thread's own arena above 64 MB whatever M_MMAP_MAX says) and returns them with munmap(), so every update
touches all those pages anew. Measured here (2-core VM, DrQ at 64², batch 128, 2 critics, 10 updates): 349,000
minor page faults per update and 2.4x fewer updates/s than with `keep_freed_memory()` (4,000 faults per update;
benchmarks/results/learner-cpu2-2026-12-04.jsonl); `benchmarks/bench_learner.py --cases drq_cpu_*` measures
both side by side.

`keep_freed_memory()` tells glibc to use one arena, never mmap and never trim, so nothing freed goes back to the
OS. What that guarantees is an accounting: a page faults only where the heap grows, and a freed block is reused
by a later call. When the heap grows is not deterministic: a freed block that small allocations made between calls
have split no longer fits the next call's, which then takes a new one, until the heap holds a few of them. No
mallopt setting orders other threads' small allocations (a top pad left it as it was), so the test checks the
accounting, not a count: over 24 fresh processes of 20 calls with a 64 MB temporary, faults beyond the heap's
growth were 0 to 53 pages and the growth 0 to 5 blocks; without it, 16k faults per call
(benchmarks/results/cpu_memory-cpu2-2026-12-07.jsonl, `python -m benchmarks.bench_cpu_memory`). It is
process-wide and must run before JAX starts its threads (entry points call it first thing); the price is that
the process keeps its peak memory. Elsewhere than glibc it returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt() parameters from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_MAX_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse (see the module doc). Returns whether the settings took."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _MAX_TRIM_THRESHOLD))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
