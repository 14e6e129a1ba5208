"""keep_freed_memory: memory XLA:CPU frees stays in the process, so its large per-call buffers stop costing fresh pages.

What it guarantees is an accounting, not a per-call count: with it, every page fault over many calls is a page
of heap growth (glibc gives nothing back), and the heap stops growing after a few blocks. When the heap grows
(a freed 64 MB block split by small allocations made between calls, so the next call's block does not fit) varies
from run to run, so a per-call count over a few calls does too (0 to 3 blocks of 16k faults over 5 calls, measured):
the test compares faults with heap growth instead. Without it every call faults its 64 MB afresh.
Measured over 24 runs of 20 calls (benchmarks/results/cpu_memory-cpu2-2026-12-07.jsonl, the same probe): with it,
faults = heap growth + 0 to 53 pages, growth 0 to 5 blocks; without it 311k-328k faults (~16k per call).
"""

from __future__ import annotations

import platform

import pytest

from benchmarks.bench_cpu_memory import BLOCK_PAGES, CALLS, probe


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
