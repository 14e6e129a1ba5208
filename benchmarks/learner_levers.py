"""bench_learner's issue-21 cases: where a DrQ update's time goes, and each throughput lever beside today's code.

`breakdown`: the pieces of one DrQ update, each jitted on its own and timed on the same inputs (ms per call):
  sample        replay.sample of critic_actor_ratio minibatches (uniform slots, frame-stack rebuild, gather)
  augment       random shift of obs and next_obs (one minibatch)
  encoder_fwd   the encoder on obs (one minibatch)
  encoder_bwd   forward + backward of the encoder (the gradient of its features' sum)
  critic_fwd_bwd  the critic ensemble's forward + backward on fixed features and actions
  targets       next features, next actions from the actor, target encoder + target critic, the REDQ min
  critic_step   one whole critic step (augment, loss, gradient through encoder + ensemble, Adam, Polyak)
  actor_temperature  the actor step (on the critic step's features) and the temperature step
  update        the whole update, as the learner runs it (critic_actor_ratio critic steps + actor + temperature)
Each piece pays its own call and copies, so the pieces add up to more than `update`; their shares say where the
time goes.

`levers`: samples through the critic per second (updates/s x batch x critic_actor_ratio) of today's path and of
each lever, all in one process, timed in alternating rounds (median) so a busy machine slows all alike:
  today            sample (one call) then update (another), as the learner did for pixel agents
  device_sampling  sampling, frame-stack rebuild and augmentation inside the update's call (make_learner_step_fn)
  scan_k           K updates per call with their sampling (K = --lever_k; on XLA:CPU the K updates are unrolled)
  bf16             device_sampling + bfloat16 compute (AgentConfig.compute_dtype)
  critic_redq10    device_sampling with SERL's ensemble of 10, 2 sampled for the target
  critic_ln2       device_sampling with 2 critics with LayerNorm, the min over both (RLPD, Squint)
  small_image      device_sampling at --small_image (16: Squint's images) instead of the case's size
  combined         scan_k + bf16 + critic_ln2 (the GPU candidate)
The base case: on a CPU, the CPU pixel preset (serl_gs.agents.config.cpu_pixel_preset: 32², 3 frames, batch 128,
2 critics, 1 critic step per update); on a GPU, the issue's configuration (64², front + wrist, batch 256, SERL's
agent: 10 critics, 4 critic steps per update).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
import optax

from benchmarks._report import emit, log
from serl_gs.agents import losses
from serl_gs.agents.config import AgentConfig, cpu_pixel_preset
from serl_gs.agents.learning import (
    _augment,
    _make_update,
    _optimizers,
    init_training_state,
    make_learner_step_fn,
    make_update_fn,
)
from serl_gs.agents.networks import make_networks
from serl_gs.data.frame_stack import stack_obs_spec
from serl_gs.data.records import RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig

BENCH = "learner"
STATE_DIM = 16
ACTION_DIM = 4


@dataclasses.dataclass(frozen=True)
class LeverBase:
    name: str
    image_size: int
    cameras: int
    frames: int
    agent: AgentConfig


def lever_base(gpu: bool, quick: bool = False) -> LeverBase:
    """The case the levers change (--quick: batch 32, for CI's dry run)."""
    if gpu:  # the configuration: SERL's agent at 64², front + wrist, batch 256
        base = LeverBase("gpu_64_2cam", 64, 2, 1, AgentConfig(batch_size=256))
    else:
        preset = cpu_pixel_preset()
        base = LeverBase("cpu_preset", preset.image_size, 1, preset.frames, preset.agent)
    if quick:
        base = dataclasses.replace(base, agent=dataclasses.replace(base.agent, batch_size=32))
    return base


def _record_spec(image_size: int, cameras: int) -> RecordSpec:
    obs = [("state", (STATE_DIM,), "float32")]
    obs += [(f"pixels/cam{i}", (image_size, image_size, 3), "uint8") for i in range(cameras)]
    return RecordSpec(obs=tuple(sorted(obs)), action_dim=ACTION_DIM)


def fill_replay(replay: ReplayBuffer, spec: RecordSpec, num_records: int, num_envs: int, seed: int) -> None:
    """Inserts `num_records` synthetic records from `num_envs` streams, episodes of 50 steps."""
    rng = np.random.default_rng(seed)
    step = 0
    while replay.total_inserted < num_records:
        n = min(num_envs, num_records - replay.total_inserted)
        records = {
            "env_index": np.arange(n, dtype=np.int32),
            "action": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
            "reward": rng.standard_normal(n).astype(np.float32),
            "terminated": np.zeros(n, bool),
            "truncated": np.full(n, step % 50 == 49),
            "is_first": np.full(n, step % 50 == 0),
        }
        for name, shape, dtype in spec.obs:
            if dtype == "uint8":
                records["obs/" + name] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            else:
                records["obs/" + name] = rng.standard_normal((n, *shape)).astype(np.float32)
        replay.insert(0, records)
        step += 1


def _filled_replay(image_size: int, cameras: int, frames: int, capacity: int) -> ReplayBuffer:
    spec = _record_spec(image_size, cameras)
    replay = ReplayBuffer(spec, ReplayConfig(capacity=capacity, storage="device", frame_stack=frames), log=log)
    fill_replay(replay, spec, capacity, num_envs=32, seed=0)
    return replay


def _networks(agent: AgentConfig, image_size: int, cameras: int, frames: int):
    spec = _record_spec(image_size, cameras)
    single = {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape, dtype in spec.obs}
    return make_networks(agent, stack_obs_spec(single, frames), ACTION_DIM)


def _median_rounds(fns: dict, iterations: dict, rounds: int) -> dict:
    """Median calls/s of each fn over `rounds` rounds that run every fn in turn (after one warm-up call each)."""
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        log(f"   {name}: first call (compile) {time.perf_counter() - start:.1f} s")
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns)
        order = order[r % len(order) :] + order[: r % len(order)]  # rotate against load drift
        for name in order:
            start = time.perf_counter()
            for _ in range(iterations[name]):
                out = fns[name]()
            jax.block_until_ready(out)
            rates[name].append(iterations[name] / (time.perf_counter() - start))
    return {name: float(np.median(v)) for name, v in rates.items()}


def run_breakdown(args, device: str, gpu: bool) -> None:
    base = lever_base(gpu, args.quick)
    c = base.agent
    replay = _filled_replay(base.image_size, base.cameras, base.frames, args.lever_capacity)
    networks = _networks(c, base.image_size, base.cameras, base.frames)
    state = init_training_state(networks, jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(2)
    batches = replay.sample(key, c.batch_size, c.critic_actor_ratio)
    mb = jax.tree.map(lambda x: x[0], batches)
    critic_params = {"encoder": state.params["encoder"], "critic": state.params["critic"]}
    features = networks.encode(state.params["encoder"], mb.obs)

    def encoder_bwd(params, obs):
        return jax.grad(lambda p: networks.encode(p, obs).sum())(params)

    def critic_fwd_bwd(params, feats, action):
        loss = lambda p: (networks.critic.apply({"params": p}, feats, action) ** 2).mean()
        return jax.grad(loss)(params)

    def targets(params, target_params, actor_params, next_obs, k):
        next_features = networks.encode(params["encoder"], next_obs)
        next_actions, _ = losses.sample_actions(networks, actor_params, next_features, k)
        target_features = networks.encode(target_params["encoder"], next_obs)
        qs = networks.critic.apply({"params": target_params["critic"]}, target_features, next_actions)
        return losses.redq_min(qs, k, c.critic_subsample_size)

    one_step = dataclasses.replace(c, critic_actor_ratio=1)
    one_step_networks = dataclasses.replace(networks, config=one_step)
    critic_only = jax.jit(_make_update(one_step_networks))  # one critic step + actor + temperature
    update = make_update_fn(networks)
    actor_only = jax.jit(_actor_temperature(networks))
    pieces = {
        "sample": lambda: replay.sample(key, c.batch_size, c.critic_actor_ratio, c.n_step, c.discount),
        "augment": (lambda f=jax.jit(lambda b, k: _augment(networks, b, k)): f(mb, key)),
        "encoder_fwd": (lambda f=jax.jit(networks.encode): f(state.params["encoder"], mb.obs)),
        "encoder_bwd": (lambda f=jax.jit(encoder_bwd): f(state.params["encoder"], mb.obs)),
        "critic_fwd_bwd": (lambda f=jax.jit(critic_fwd_bwd): f(state.params["critic"], features, mb.action)),
        "targets": (lambda f=jax.jit(targets): f(critic_params, state.target_params, state.params["actor"],
                                                   mb.next_obs, key)),  # fmt: skip
        "critic_step_plus_actor": (lambda f=critic_only: f(state, jax.tree.map(lambda x: x[:1], batches))[1]),
        "actor_temperature": (lambda f=actor_only: f(state, features)[1]),
        "update": (lambda f=update: f(state, batches)[1]),
    }
    rates = _median_rounds(pieces, dict.fromkeys(pieces, args.lever_iterations), args.lever_rounds)
    config = {
        "agent": base.name, "image": [base.image_size, base.image_size, 3 * base.frames], "cameras": base.cameras,
        "batch": c.batch_size, "ensemble": c.critic_ensemble_size, "critic_actor_ratio": c.critic_actor_ratio,
        "compute_dtype": c.compute_dtype, "load_avg_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    for name, r in rates.items():
        emit(BENCH, "ms_per_call_lower_is_better", 1e3 / r, "ms", config={**config, "piece": name}, quick=args.quick,
             baseline="update", baseline_value=1e3 / rates["update"], device=device)  # fmt: skip


def _actor_temperature(networks):
    """The update's actor + temperature step alone (on given features): the update with its critic steps cut."""
    opt = _optimizers(networks)
    target_entropy = networks.config.resolved_target_entropy(networks.action_dim)

    def step(state, features):
        params = state.params
        grads, info = jax.grad(losses.actor_loss_on_features, argnums=1, has_aux=True)(
            networks, params["actor"], params["critic"], params["temperature"], features, state.rng
        )
        updates, actor_opt = opt.actor.update(grads, state.actor_opt_state, params["actor"])
        temp_grads, temp_info = jax.grad(losses.temperature_loss, has_aux=True)(
            params["temperature"], info.pop("log_probs"), target_entropy
        )
        temp_updates, _ = opt.temperature.update(temp_grads, state.temperature_opt_state, params["temperature"])
        return (optax.apply_updates(params["actor"], updates), actor_opt,
                optax.apply_updates(params["temperature"], temp_updates)), {**info, **temp_info}  # fmt: skip

    return step


def lever_variants(base: LeverBase, k: int, small_image: int) -> dict[str, dict]:
    """name -> how the variant differs from the base: agent overrides, image size, updates per call, sampling."""
    ln2 = dict(critic_ensemble_size=2, critic_subsample_size=None, critic_layer_norm=True)
    return {
        "today": dict(fused=False),
        "device_sampling": dict(),
        "scan_k": dict(k=k),
        "bf16": dict(agent=dict(compute_dtype="bfloat16")),
        "critic_redq10": dict(agent=dict(critic_ensemble_size=10, critic_subsample_size=2)),
        "critic_ln2": dict(agent=ln2),
        "small_image": dict(image_size=small_image),
        "combined": dict(k=k, agent=dict(compute_dtype="bfloat16", **ln2)),
    }


def run_levers(args, device: str, gpu: bool) -> None:
    base = lever_base(gpu, args.quick)
    k = args.lever_k or (10 if gpu else 4)
    variants = lever_variants(base, k, args.small_image)
    if args.levers:
        variants = {name: v for name, v in variants.items() if name in args.levers or name == "today"}
    replays: dict[int, ReplayBuffer] = {}
    fns, iterations, described = {}, {}, {}
    for name, v in variants.items():
        agent = dataclasses.replace(base.agent, **v.get("agent", {}))
        size = v.get("image_size", base.image_size)
        if size not in replays:
            replays[size] = _filled_replay(size, base.cameras, base.frames, args.lever_capacity)
        replay = replays[size]
        networks = _networks(agent, size, base.cameras, base.frames)
        holder = {"state": init_training_state(networks, jax.random.PRNGKey(1)), "key": jax.random.PRNGKey(2)}
        per_call = v.get("k", 1)
        if v.get("fused", True):
            step = make_learner_step_fn(networks, per_call, base.frames)

            def call(step=step, holder=holder, replay=replay):
                holder["key"], key = jax.random.split(holder["key"])
                holder["state"], metrics = step(holder["state"], replay.device_fields(), key)
                return metrics
        else:
            update = make_update_fn(networks)

            def call(update=update, holder=holder, replay=replay, a=agent):
                holder["key"], key = jax.random.split(holder["key"])
                batch = replay.sample(key, a.batch_size, a.critic_actor_ratio, a.n_step, a.discount)
                holder["state"], metrics = update(holder["state"], batch)
                return metrics

        fns[name] = call
        iterations[name] = max(1, args.lever_iterations // per_call)
        described[name] = (agent, size, per_call)
    rates = _median_rounds(fns, iterations, args.lever_rounds)
    samples = {}
    for name, r in rates.items():
        agent, _, per_call = described[name]
        samples[name] = r * per_call * agent.batch_size * agent.critic_actor_ratio
    for name, r in rates.items():
        agent, size, per_call = described[name]
        config = {
            "agent": base.name, "lever": name, "image": [size, size, 3 * base.frames], "cameras": base.cameras,
            "batch": agent.batch_size, "ensemble": agent.critic_ensemble_size,
            "critic_subsample": agent.critic_subsample_size, "critic_actor_ratio": agent.critic_actor_ratio,
            "compute_dtype": agent.compute_dtype, "updates_per_call": per_call, "rounds": args.lever_rounds,
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }  # fmt: skip
        emit(BENCH, "critic_samples_per_s", samples[name], "1/s", config=config, quick=args.quick,
             baseline="today", baseline_value=samples["today"], device=device)  # fmt: skip
        emit(BENCH, "updates_per_s", r * per_call, "1/s", config=config, quick=args.quick, baseline="today",
             baseline_value=rates["today"], device=device)  # fmt: skip
