"""The actor's per-step data path: records built on the host (the old path) vs on the device and copied once.

    python -m benchmarks.bench_actor_records --quick                       # 256 envs, state and 16 px pixels
    python -m benchmarks.bench_actor_records --num_envs 256,1024           # MJX-Warp on the CPU, or a GPU

Each step of PandaPickCube (MJX, staggered first episodes, resets_per_step auto) goes through both paths, on
the same env step:
- `host` (the baseline, the actor before serl_gs.data.device_records): reward, terminated and truncated read
  on the host one by one, then `step_records` + `with_extras` over host copies of obs and final obs;
- `device`: `build_step_records` where the arrays are, one `jax.device_get`, views of the real rows.

Per (obs, num_envs), one JSON line per figure:
- `device_to_host_bytes_per_step`: bytes of device arrays the path reads on the host (on a GPU, PCIe traffic);
- `host_reads_per_step`: separate blocking reads of device arrays (each waits for the device);
- `host_alloc_peak_bytes_per_step`: peak bytes the path holds in new host memory (numpy copies, tracemalloc);
- `record_ms_per_step`: wall time of the path after the env step (lower is better).
On a CPU device memory is host memory, so reads copy nothing there: the bytes and reads are what a GPU pays.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import gymnasium as gym
import jax
import numpy as np

import envs  # noqa: F401
from benchmarks._report import emit, log
from serl_gs.data.device_records import build_step_records, copy_to_host
from serl_gs.data.records import step_records, with_extras

BENCH = "actor_records"


def host_path(num_envs, obs, actions, reward, terminated, truncated, infos):
    """The actor's old records path: three flag reads, then records from host copies. Returns (records, reads,
    device bytes read)."""
    reward, terminated, truncated = np.array(reward), np.array(terminated), np.array(truncated)
    done = terminated | truncated
    success = np.asarray(infos["success"], np.float32)
    records = step_records(obs, actions, reward, terminated, truncated, infos)
    records = with_extras(records, num_envs, {"episode_return": reward, "success": success})
    leaves = [reward, terminated, truncated, infos["success"], actions, infos["_final_obs"]]
    arrays = [*obs.values(), *infos["final_obs"].values()]
    nbytes = sum(int(np.asarray(x).nbytes) for x in leaves) + sum(int(x.nbytes) for x in arrays)
    reads = 6 + len(arrays)  # reward, terminated, truncated, success, action, the mask; every obs and final obs
    assert done.shape == (num_envs,)
    return records, reads, nbytes


def device_path(num_envs, resets, obs, actions, reward, terminated, truncated, infos):
    built = build_step_records(
        obs, actions, reward, terminated, truncated, infos["final_obs"], {"success": infos["success"]}, resets=resets
    )
    nbytes = sum(int(x.nbytes) for x in jax.tree.leaves(built))
    records = copy_to_host(built, num_envs)
    n = num_envs
    records = with_extras(records, n, {"episode_return": records["reward"][:n]})
    return records, 1, nbytes


def measure(path, steps: list) -> tuple[float, float, int, int]:
    """(ms per step, host bytes allocated per step, reads, device bytes read) of `path` over the same steps:
    timed first, then once more under tracemalloc (which numpy reports its buffers to)."""
    total_ms = 0.0
    for args in steps:
        jax.block_until_ready([x for x in jax.tree.leaves(args) if isinstance(x, jax.Array)])
        t = time.perf_counter()
        records, reads, nbytes = path(*args)
        total_ms += (time.perf_counter() - t) * 1e3
        del records
    total_alloc = 0
    tracemalloc.start()
    for args in steps:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        records, _, _ = path(*args)
        total_alloc += max(tracemalloc.get_traced_memory()[1] - before, 0)
        del records
    tracemalloc.stop()
    return total_ms / len(steps), total_alloc / len(steps), reads, nbytes


def run(num_envs: int, obs_mode: str, image_size: int, steps: int, quick: bool) -> None:
    kwargs = {"obs_mode": obs_mode}
    if obs_mode == "pixels":
        kwargs.update(render_backend="reference", image_size=image_size)
    vec = gym.make_vec(
        "serl_gs/PandaPickCube-v0", num_envs=num_envs, physics="mjx", mjx_impl="warp", resets_per_step="auto",
        stagger=True, **kwargs,
    )  # fmt: skip
    log(f"{obs_mode} {num_envs} envs: resets_per_step {vec.resets_per_step} ({vec.resets_reason})")
    vec.reset(seed=0)
    key = jax.random.PRNGKey(0)
    captured = []
    for _ in range(steps + 1):  # the first compiles
        key, k = jax.random.split(key)
        actions = jax.random.uniform(k, (num_envs, vec.single_action_space.shape[0]), minval=-1.0, maxval=1.0)
        obs, reward, terminated, truncated, infos = vec.step_on_device(actions)
        captured.append((num_envs, obs, actions, reward, terminated, truncated, infos))
    # Same steps through both paths; the device path once first to compile its program.
    device_steps = [(c[0], vec.resets_per_step, *c[1:]) for c in captured]
    device_path(*device_steps[0])
    host = measure(host_path, captured[1:])
    device = measure(device_path, device_steps[1:])
    config = {"env": "PandaPickCube-v0", "num_envs": num_envs, "obs_mode": obs_mode, "physics": "mjx-warp",
              "resets_per_step": vec.resets_per_step, "steps": steps}  # fmt: skip
    if obs_mode == "pixels":
        config["image_size"] = image_size
    names = [
        ("record_ms_per_step", "ms", 0),
        ("host_alloc_peak_bytes_per_step", "B", 1),
        ("host_reads_per_step", "1", 2),
        ("device_to_host_bytes_per_step", "B", 3),
    ]
    for metric, unit, i in names:
        emit(BENCH, metric + " (lower is better)", device[i], unit, config=config, quick=quick,
             baseline="host_records", baseline_value=host[i])  # fmt: skip
    vec.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_envs", default="256,1024", help="comma-separated batch sizes")
    p.add_argument("--obs", default="state,pixels", help="comma-separated: state, pixels")
    p.add_argument("--image_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps per path")
    p.add_argument("--quick", action="store_true", help="256 envs, 3 steps")
    a = p.parse_args()
    sizes = [256] if a.quick else [int(x) for x in a.num_envs.split(",")]
    steps = 3 if a.quick else a.steps
    for obs_mode in a.obs.split(","):
        for n in sizes:
            run(n, obs_mode, a.image_size, steps, a.quick)


if __name__ == "__main__":
    main()
