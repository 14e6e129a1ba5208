"""One DrQ update-rate measurement in a fresh process (bench_learner's drq_cpu cases run it side by side).

A process of its own per measurement: `keep_freed_memory` (serl_gs.cpu_memory) changes the whole process's
allocator and must run before JAX starts, so "with" and "without" cannot share a process.

    python -m benchmarks.drq_update_worker '{"image_size": 64, "batch_size": 128, "critic_ensemble_size": 2,
        "critic_actor_ratio": 1, "channels": [32, 32, 32, 32], "actor_features": "recompute",
        "keep_freed_memory": false, "updates": 5}'

prints one JSON object: {"updates_per_s", "page_faults_per_update", "seconds"}.
"""

from __future__ import annotations

import json
import sys


def measure(spec: dict) -> dict:
    from serl_gs.cpu_memory import keep_freed_memory

    if spec["keep_freed_memory"]:
        keep_freed_memory()  # before JAX makes its threads (their malloc arenas)

    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from serl_gs.agents.config import AgentConfig, EncoderConfig
    from serl_gs.agents.learning import init_training_state, make_update_fn
    from serl_gs.agents.networks import make_networks
    from serl_gs.data.batch import Batch

    size, batch_size, ratio = spec["image_size"], spec["batch_size"], spec["critic_actor_ratio"]
    frames = spec.get("frames", 1)
    config = AgentConfig(
        batch_size=batch_size,
        critic_ensemble_size=spec["critic_ensemble_size"],
        critic_subsample_size=min(2, spec["critic_ensemble_size"]),
        critic_actor_ratio=ratio,
        encoder=EncoderConfig(channels=tuple(spec["channels"]), first_stride=spec.get("first_stride", 2)),
        actor_features=spec["actor_features"],
    )
    obs_spec = {"pixels/cam0": jax.ShapeDtypeStruct((size, size, 3 * frames), jnp.uint8)}
    networks = make_networks(config, obs_spec, action_dim=1)
    update = make_update_fn(networks)
    rng = np.random.default_rng(0)
    pixels = lambda: rng.integers(0, 256, (ratio, batch_size, size, size, 3 * frames), dtype=np.uint8)
    batch = jax.device_put(
        Batch(
            obs={"pixels/cam0": pixels()},
            action=rng.uniform(-1, 1, (ratio, batch_size, 1)).astype(np.float32),
            reward=rng.standard_normal((ratio, batch_size)).astype(np.float32),
            terminated=np.zeros((ratio, batch_size), bool),
            next_obs={"pixels/cam0": pixels()},
        ),
        jax.devices()[0],
    )
    state = init_training_state(networks, jax.random.PRNGKey(0))
    for _ in range(2):  # compile, then one call that settles the allocator
        state, metrics = update(state, batch)
        jax.block_until_ready(metrics)
    updates = spec["updates"]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(updates):
        state, metrics = update(state, batch)
        jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"updates_per_s": updates / seconds, "page_faults_per_update": faults / updates, "seconds": seconds}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
