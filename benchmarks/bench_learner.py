"""Learner throughput: updates/s and sampled transitions/s for SAC (state) and DrQ (64², 128², 1-2 cameras).

One JSON line per figure (benchmarks/_report.py). For each agent:
  updates_per_s              update(state, batch): critic_actor_ratio critic steps + 1 actor/temperature step,
                             SERL's default networks (10 critics, 256x2 MLPs); baseline: the previous result
                             recorded under benchmarks/results/ for the same config and device, if any
  sampled_transitions_per_s  replay.sample with frames on the device; baseline: frames in host memory
  learner_steps_per_s        sample + update, what the learner loop did one update per call (the DrQ-v2
                             anchor, ~25 updates/s including env and rendering on one GPU, is a whole-system
                             figure, not this one)
  fused_updates_per_s        K updates per call with their sampling inside the call (make_learner_step_fn),
                             K = --updates_per_call; baseline: learner_steps_per_s of the same run, the two
                             timed in alternating rounds (median) so a busy machine slows both alike
  cpu_ms_per_update_...      the same two paths' CPU time per update (this process, all threads): on a
                             machine shared with other work, what the update costs rather than what it got
  sac_state_demo             the main job's agent (run_demo.sh: 4 critics, 128x128, batch 128, ratio 2, n-step 3)
                             on a replay of the main job's capacity (200k; the sampler's pass over it is a
                             per-call cost)

    python benchmarks/bench_learner.py --quick     # < 1 min on a 2-core CPU: SAC and DrQ 64² 1 camera,
                                                   # batch 32, few iterations (compiling dominates)
    python benchmarks/bench_learner.py             # batch 256, every case

DrQ on a CPU (cases drq_cpu_*): the update at the issue-11 configuration (one camera, batch 128, 2 critics, one
critic step per update) and at the CPU pixel preset (serl_gs.agents.config.cpu_pixel_preset), each measured
in fresh processes (benchmarks/drq_update_worker.py), variants interleaved round by round, median reported:
  today       the update as it was: glibc's default allocator, the actor step encodes its obs again
  allocator   + serl_gs.cpu_memory.keep_freed_memory() (XLA:CPU's buffers no longer page-fault each call)
  features    + the actor step reuses the critic step's obs features (AgentConfig.actor_features)
  ours        both (what the learner runs); baseline: today, same process layout, same run
    python benchmarks/bench_learner.py --cases drq_cpu_64 drq_cpu_preset [--drq_rounds 3]

Every rate also comes as critic_samples_per_s: transitions through the critic per second (updates/s x batch x
critic_actor_ratio), the figure an actor's production (env steps/s) is compared with.

Issue 21's cases (benchmarks/learner_levers.py): `breakdown` (ms per piece of one DrQ update) and `levers`
(critic samples/s of today's path beside each lever: device sampling, K updates per call, bf16, SERL's 10-critic
ensemble vs 2 critics with LayerNorm, 16² images, all combined; on a CPU the CPU pixel preset, on a GPU 64²
front + wrist at batch 256):
    python benchmarks/bench_learner.py --cases breakdown levers
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import learner_levers  # noqa: E402
from benchmarks._report import device_name, emit, log  # noqa: E402
from serl_gs.agents.config import AgentConfig, cpu_pixel_preset  # noqa: E402
from serl_gs.agents.learning import (  # noqa: E402
    init_training_state,
    make_learner_step_fn,
    make_update_fn,
    unrolls_updates,
)  # noqa: E402
from serl_gs.agents.networks import make_networks  # noqa: E402
from serl_gs.data.records import RecordSpec  # noqa: E402
from serl_gs.data.replay import ReplayBuffer, ReplayConfig  # noqa: E402

BENCH = "learner"
STATE_DIM = 16
ACTION_DIM = 4


@dataclass(frozen=True)
class Case:
    name: str
    image_size: int  # 0 = state only (SAC)
    cameras: int
    agent: tuple = ()  # AgentConfig overrides, as (name, value) pairs
    capacity: int = 0  # replay records; 0 = --capacity


# The main job's learner (run_demo.sh).
DEMO_AGENT = (("hidden_dims", (128, 128)), ("critic_ensemble_size", 4), ("batch_size", 128),
              ("critic_actor_ratio", 2), ("n_step", 3))  # fmt: skip

CASES = [
    Case("sac_state", 0, 0),
    Case("sac_state_demo", 0, 0, DEMO_AGENT, capacity=200_000),
    Case("drq_64_1cam", 64, 1),
    Case("drq_64_2cam", 64, 2),
    Case("drq_128_1cam", 128, 1),
    Case("drq_128_2cam", 128, 2),
]
QUICK_CASES = ["sac_state", "sac_state_demo", "drq_64_1cam"]
LEVER_CASES = ["breakdown", "levers"]


def emit_samples(rate_per_s: float, batch_size: int, ratio: int, config: dict, args, device: str,
                 baseline: str | None = None, baseline_rate: float | None = None) -> None:
    """critic_samples_per_s beside an updates/s figure: updates/s x batch x critic_actor_ratio."""
    per_update = batch_size * ratio
    emit(BENCH, "critic_samples_per_s", rate_per_s * per_update, "1/s", config=config, quick=args.quick,
         baseline=baseline, baseline_value=None if baseline_rate is None else baseline_rate * per_update,
         device=device)  # fmt: skip


@dataclass(frozen=True)
class CpuDrqCase:
    name: str
    image_size: int
    channels: tuple[int, ...]
    batch_size: int = 128
    critic_ensemble_size: int = 2
    critic_actor_ratio: int = 1
    frames: int = 1  # frames stacked per camera (channels 3 * frames)


def _cpu_drq_cases() -> list[CpuDrqCase]:
    preset = cpu_pixel_preset()
    return [
        CpuDrqCase("drq_cpu_64", 64, (32, 32, 32, 32)),
        CpuDrqCase(
            "drq_cpu_preset",
            preset.image_size,
            preset.agent.encoder.channels,
            preset.agent.batch_size,
            preset.agent.critic_ensemble_size,
            preset.agent.critic_actor_ratio,
            preset.frames,
        ),
    ]


CPU_DRQ_CASES = [c.name for c in _cpu_drq_cases()]
VARIANTS = {  # name: (keep_freed_memory, actor_features)
    "today": (False, "recompute"),
    "allocator": (True, "recompute"),
    "features": (False, "critic_step"),
    "ours": (True, "critic_step"),
}


def record_spec(case: Case) -> RecordSpec:
    obs = [("state", (STATE_DIM,), "float32")]
    obs += [(f"pixels/cam{i}", (case.image_size, case.image_size, 3), "uint8") for i in range(case.cameras)]
    return RecordSpec(obs=tuple(sorted(obs)), action_dim=ACTION_DIM)


def rate(fn, iterations: int) -> float:
    """Calls per second of `fn` (which returns something to block on), after one warm-up call."""
    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(iterations):
        out = fn()
    jax.block_until_ready(out)
    return iterations / (time.perf_counter() - start)


def previous_result(metric: str, config: dict, device: str, quick: bool) -> float | None:
    """The latest recorded value of this figure on this device (benchmarks/results/learner-*.jsonl)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    value = None
    for path in sorted(glob.glob(os.path.join(folder, f"{BENCH}-*.jsonl"))):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                same = (row.get("metric"), row.get("config"), row.get("device"), row.get("quick"))
                if same == (metric, config, device, quick):
                    value = row["value"]
    return value


def alternating_rates(fns: dict, iterations: dict, rounds: int) -> tuple[dict, dict]:
    """Median calls/s (wall-clock) and CPU seconds per call (this process, all threads) of each fn over `rounds`
    rounds that run every fn once in turn (one warm-up call each). On a machine shared with other work the
    wall-clock rate falls with the load; the CPU time a call takes much less so."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    rates = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(iterations[name]):
                out = fn()
            jax.block_until_ready(out)
            rates[name].append(iterations[name] / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - cpu_start) / iterations[name])
    median = lambda d: {name: float(np.median(values)) for name, values in d.items()}
    return median(rates), median(cpu)


def learner_step_fn(replay, update, holder: dict, agent_config):
    """One update per call, as the learner loop did it: sample (one call), then update (another)."""
    keys = {"key": jax.random.PRNGKey(3)}
    c = agent_config

    def learner_step():
        keys["key"], key = jax.random.split(keys["key"])
        fresh = replay.sample(key, c.batch_size, c.critic_actor_ratio, c.n_step, c.discount)
        holder["state"], metrics = update(holder["state"], fresh)
        return metrics

    return learner_step


def run_case(case: Case, args, device: str) -> None:
    overrides = dict(case.agent)
    batch_size = overrides.pop("batch_size", args.batch_size)
    agent_config = AgentConfig(batch_size=batch_size, **overrides)
    ratio = agent_config.critic_actor_ratio
    capacity = case.capacity or args.capacity
    spec = record_spec(case)
    config = {
        "agent": case.name,
        "image": [case.image_size, case.image_size, 3] if case.cameras else None,
        "cameras": case.cameras,
        "batch": batch_size,
        "critic_actor_ratio": ratio,
        "ensemble": agent_config.critic_ensemble_size,
        "capacity": capacity,
    }
    if case.agent:
        config.update(hidden=list(agent_config.hidden_dims), n_step=agent_config.n_step)
    replays = {
        kind: ReplayBuffer(spec, ReplayConfig(capacity=capacity, storage=kind), log=log)
        for kind in ("device", "host")
    }
    for replay in replays.values():
        learner_levers.fill_replay(replay, spec, capacity, num_envs=64, seed=0)

    key = jax.random.PRNGKey(0)
    sample = {kind: (lambda r=replay: r.sample(key, batch_size, ratio)) for kind, replay in replays.items()}
    sample_rates = {kind: rate(fn, args.sample_iterations) * batch_size * ratio for kind, fn in sample.items()}
    emit(BENCH, "sampled_transitions_per_s", sample_rates["device"], "1/s", config=config, quick=args.quick,
         baseline="host_storage", baseline_value=sample_rates["host"], device=device)  # fmt: skip

    obs_spec = {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape, dtype in spec.obs}
    networks = make_networks(agent_config, obs_spec, ACTION_DIM)
    update = make_update_fn(networks)
    holder = {"state": init_training_state(networks, jax.random.PRNGKey(1))}
    batch = sample["device"]()

    def one_update():
        holder["state"], metrics = update(holder["state"], batch)
        return metrics

    updates = rate(one_update, args.plain_iterations)
    previous = previous_result("updates_per_s", config, device, args.quick)
    emit(BENCH, "updates_per_s", updates, "1/s", config=config, quick=args.quick,
         baseline="previous_recorded" if previous else None, baseline_value=previous, device=device)  # fmt: skip
    emit_samples(updates, batch_size, ratio, {**config, "rate": "updates_per_s"}, args, device)

    if unrolls_updates(networks):
        log(f"{case.name}: updates run unrolled on this backend (pixels on a CPU); the learner uses one per call")
        steps = rate(learner_step_fn(replays["device"], update, holder, agent_config), args.plain_iterations)
        emit(BENCH, "learner_steps_per_s", steps, "1/s", config=config, quick=args.quick, device=device)
        emit_samples(steps, batch_size, ratio, {**config, "rate": "learner_steps_per_s"}, args, device)
        return
    # Today's loop (sample, then update: two calls per update) beside K updates per call, sampling inside.
    keys = {"key": jax.random.PRNGKey(2)}
    learner_step = learner_step_fn(replays["device"], update, holder, agent_config)
    k = args.updates_per_call
    fused_step = make_learner_step_fn(networks, k)

    def fused():
        keys["key"], key = jax.random.split(keys["key"])
        holder["state"], metrics = fused_step(holder["state"], replays["device"].device_fields(), key)
        return metrics

    calls = max(1, args.update_iterations // k)
    rates, cpu = alternating_rates({"old": learner_step, "fused": fused}, {"old": calls * k, "fused": calls},
                                   args.rounds)  # fmt: skip
    fused_config = {**config, "updates_per_call": k}
    emit(BENCH, "learner_steps_per_s", rates["old"], "1/s", config=config, quick=args.quick, device=device)
    emit(BENCH, "fused_updates_per_s", rates["fused"] * k, "1/s", config=fused_config, quick=args.quick,
         baseline="one_update_per_call", baseline_value=rates["old"], device=device)  # fmt: skip
    emit_samples(rates["old"], batch_size, ratio, {**config, "rate": "learner_steps_per_s"}, args, device)
    emit_samples(rates["fused"] * k, batch_size, ratio, {**fused_config, "rate": "fused_updates_per_s"}, args, device,
                 baseline="one_update_per_call", baseline_rate=rates["old"])  # fmt: skip
    emit(BENCH, "cpu_ms_per_update_lower_is_better", cpu["fused"] / k * 1e3, "ms", config=fused_config,
         quick=args.quick, baseline="one_update_per_call", baseline_value=cpu["old"] * 1e3, device=device)  # fmt: skip


def measure_in_subprocess(case: CpuDrqCase, variant: str, updates: int) -> dict:
    keep, actor_features = VARIANTS[variant]
    spec = {
        "image_size": case.image_size, "channels": list(case.channels), "batch_size": case.batch_size,
        "critic_ensemble_size": case.critic_ensemble_size, "critic_actor_ratio": case.critic_actor_ratio,
        "frames": case.frames, "actor_features": actor_features, "keep_freed_memory": keep, "updates": updates,
    }  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.drq_update_worker", json.dumps(spec)],
        cwd=root, env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cpu_drq_case(case: CpuDrqCase, args, device: str) -> None:
    """Every variant in its own process, interleaved round by round (rotating the order against load drift)."""
    names = list(VARIANTS)
    results: dict[str, list[dict]] = {v: [] for v in names}
    for r in range(args.drq_rounds):
        for variant in names[r % len(names) :] + names[: r % len(names)]:
            row = measure_in_subprocess(case, variant, args.drq_updates)
            log(f"   round {r} {variant:9s} {row['updates_per_s']:.3f} updates/s, "
                f"{row['page_faults_per_update']:.0f} page faults/update")  # fmt: skip
            results[variant].append(row)
    median = {v: statistics.median(x["updates_per_s"] for x in rows) for v, rows in results.items()}
    config = {
        "agent": case.name, "image": [case.image_size, case.image_size, 3 * case.frames], "cameras": 1,
        "channels": list(case.channels), "batch": case.batch_size, "ensemble": case.critic_ensemble_size,
        "critic_actor_ratio": case.critic_actor_ratio, "rounds": args.drq_rounds, "updates_per_round": args.drq_updates,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    for variant in names[1:]:
        faults = statistics.median(x["page_faults_per_update"] for x in results[variant])
        emit(BENCH, "updates_per_s", median[variant], "1/s", config={**config, "variant": variant,
             "page_faults_per_update": round(faults)}, quick=args.quick, baseline="today",
             baseline_value=median["today"], device=device)  # fmt: skip
        emit_samples(median[variant], case.batch_size, case.critic_actor_ratio,
                     {**config, "variant": variant, "rate": "updates_per_s"}, args, device, baseline="today",
                     baseline_rate=median["today"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute on a 2-core CPU")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 32 with --quick, else 256")
    parser.add_argument("--capacity", type=int, default=None, help="replay records; default 1000 / 100000")
    parser.add_argument("--updates_per_call", type=int, default=10, help="K of the fused path (the main job's)")
    parser.add_argument("--cases", nargs="*", default=None,
                        choices=[c.name for c in CASES] + CPU_DRQ_CASES + LEVER_CASES,
                        help=f"default: all, or {QUICK_CASES} with --quick")  # fmt: skip
    parser.add_argument("--drq_rounds", type=int, default=3, help="drq_cpu cases: interleaved rounds per variant")
    parser.add_argument("--drq_updates", type=int, default=None, help="drq_cpu cases: updates timed per process")
    parser.add_argument("--levers", nargs="*", default=None, help="levers case: only these (today always runs)")
    parser.add_argument("--lever_k", type=int, default=0, help="levers case: K of scan_k (0: 10 on a GPU, else 4)")
    parser.add_argument("--small_image", type=int, default=16, help="levers case: small_image's side")
    parser.add_argument("--lever_rounds", type=int, default=None, help="breakdown/levers: alternating rounds")
    parser.add_argument("--lever_iterations", type=int, default=None, help="breakdown/levers: updates per round")
    args = parser.parse_args()
    args.lever_rounds = args.lever_rounds or (2 if args.quick else 3)
    args.lever_iterations = args.lever_iterations or (2 if args.quick else 8)
    args.lever_capacity = 1_000 if args.quick else 20_000
    args.batch_size = args.batch_size or (32 if args.quick else 256)
    args.capacity = args.capacity or (1_000 if args.quick else 100_000)
    args.sample_iterations = 5 if args.quick else 50
    args.plain_iterations = 2 if args.quick else 20
    args.update_iterations = args.updates_per_call * (2 if args.quick else 8)
    args.rounds = 3 if args.quick else 5
    args.drq_updates = args.drq_updates or (2 if args.quick else 6)
    device = device_name()
    log(f"bench_learner on {device}, jax backend {jax.default_backend()}")
    chosen = args.cases or (QUICK_CASES if args.quick else [c.name for c in CASES])
    for case in CASES:
        if case.name in chosen:
            log(f"-- {case.name}")
            run_case(case, args, device)
    for case in _cpu_drq_cases():
        if case.name in chosen or not (args.cases or args.quick):
            log(f"-- {case.name}")
            run_cpu_drq_case(case, args, device)
    gpu = jax.default_backend() == "gpu"
    if "breakdown" in chosen or not (args.cases or args.quick):
        log("-- breakdown")
        learner_levers.run_breakdown(args, device, gpu)
    if "levers" in chosen or not (args.cases or args.quick):
        log("-- levers")
        learner_levers.run_levers(args, device, gpu)


if __name__ == "__main__":
    main()
