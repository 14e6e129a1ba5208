"""Updates to the first pick: state SAC on PandaPickCube in one process (no sockets), per seed.

The main job's loop without the network: one actor (16 envs, uniform random actions for `--random_steps` env
steps, then the stochastic policy) and one learner kept at `--utd` updates per inserted transition after
`--training_starts`, the actor's policy refreshed every `--publish_every` updates (the learner publishes that
often). Updates run `--publish_every` at a time in one fused call (agents.learning.make_learner_step_fn), which
computes what as many single updates on fresh batches compute.

Per seed it reports the updates, env steps and seconds to the first training episode that ends with the cube
lifted (the learner's `success`), and training success over the last `--window` episodes when it stops: at
`--stop_success` over the window, or at `--max_updates`. One JSON line per figure (../shared/BENCHMARKS.md),
then the median over seeds; `--curves FILE` writes every seed's curve (updates, env steps, s, return, success).

    python -m benchmarks.first_pick --quick                                  # < 1 min: the loop runs, no pick
    nice -n 10 python -m benchmarks.first_pick --seeds 0,1,2 --max_updates 60000 --n_step 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._report import device_name, emit, log  # noqa: E402

BENCH = "first_pick"
ENV_ID = "serl_gs/PandaPickCube-v0"


def agent_config(args):
    from serl_gs.agents.config import AgentConfig

    return AgentConfig(
        hidden_dims=tuple(int(h) for h in args.hidden_dims.split(",")),
        activation=args.activation,
        critic_ensemble_size=args.critic_ensemble_size,
        critic_subsample_size=min(2, args.critic_ensemble_size),
        discount=args.discount,
        n_step=args.n_step,
        batch_size=args.batch_size,
        critic_actor_ratio=args.critic_actor_ratio,
        actor_lr=args.lr,
        critic_lr=args.lr,
        temperature_lr=args.lr,
        initial_temperature=args.initial_temperature,
        target_entropy=args.target_entropy,
    )


def run_seed(args, seed: int) -> dict:
    """One training run; returns its first-pick figures, final window success and curve."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the serl_gs/ ids)
    from serl_gs.agents.exploration import ColoredNoise
    from serl_gs.agents.learning import init_training_state, make_learner_step_fn
    from serl_gs.agents.networks import make_inference_fn, make_networks, obs_spec_from_batch, policy_params
    from serl_gs.data.records import RecordSpec, reset_records, step_records
    from serl_gs.data.replay import ReplayBuffer, ReplayConfig

    config = agent_config(args)
    vec = gym.make_vec(ENV_ID, num_envs=args.num_envs, physics="mujoco", array_backend="numpy")
    obs, _ = vec.reset(seed=seed)
    action_dim = vec.single_action_space.shape[0]
    first = reset_records(obs, action_dim)
    replay = ReplayBuffer(RecordSpec.from_records(first), ReplayConfig(args.replay_capacity), log=lambda m: None)
    replay.insert(0, first)
    networks = make_networks(config, obs_spec_from_batch(obs), action_dim)
    state = init_training_state(networks, jax.random.PRNGKey(seed))
    learner_step = make_learner_step_fn(networks, args.publish_every)
    policy = make_inference_fn(networks)
    params = policy_params(state.params)
    key = jax.random.PRNGKey(seed + 1)
    rng = np.random.default_rng(seed)
    noise = None
    if args.noise_beta > 0:
        noise = ColoredNoise(args.num_envs, action_dim, steps=100, beta=args.noise_beta, seed=seed + 2)

    returns = np.zeros(args.num_envs)
    window: deque[float] = deque(maxlen=args.window)
    since_log: list[tuple[float, float]] = []
    curve: list[dict] = []
    first_pick: dict | None = None
    inserted = updates = env_steps = 0
    t0 = time.perf_counter()
    next_log = args.log_every
    stop_reason = "max_updates"
    try:  # SIGTERM / Ctrl-C (see main) end the seed with what it has
        while updates < args.max_updates:
            if env_steps < args.random_steps:
                action = rng.uniform(-1.0, 1.0, (args.num_envs, action_dim)).astype(np.float32)
            else:
                key, act_key = jax.random.split(key)
                eps = None if noise is None else noise.next()
                action = np.asarray(policy(params, obs, act_key, False, eps))
            obs, reward, terminated, truncated, infos = vec.step(action)
            records = step_records(obs, action, reward, terminated, truncated, infos)
            replay.insert(0, records)
            inserted += int((~records["is_first"]).sum())
            env_steps += args.num_envs
            returns += reward
            done = terminated | truncated
            if noise is not None:
                noise.reset(done)
            for i in np.flatnonzero(done):
                success = float(infos["success"][i])
                window.append(success)
                since_log.append((returns[i], success))
                if success and first_pick is None:
                    first_pick = {"updates": updates, "env_steps": env_steps, "wall_s": time.perf_counter() - t0}
                    log(f"seed {seed}: first pick at {updates} updates, {env_steps} env steps")
                returns[i] = 0.0

            # The rate limiter's target, in whole calls of `publish_every` updates (the policy refreshes after each).
            owed = int(args.utd * (inserted - args.training_starts)) - updates
            for _ in range(max(0, owed) // args.publish_every):
                key, sample_key = jax.random.split(key)
                state, metrics = learner_step(state, replay.device_fields(), sample_key)
                updates += args.publish_every
                params = policy_params(state.params)

            if updates >= next_log and since_log:
                row = {
                    "updates": updates,
                    "env_steps": env_steps,
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "episode_return": round(float(np.mean([r for r, _ in since_log])), 2),
                    "success": round(float(np.mean([s for _, s in since_log])), 3),
                    "window_success": round(float(np.mean(window)), 3),
                    "q": round(float(metrics["q"]), 3),
                    "temperature": round(float(metrics["temperature"]), 5),
                }
                curve.append(row)
                log(f"seed {seed}: {json.dumps(row)}")
                since_log, next_log = [], next_log + args.log_every
            if len(window) == args.window and np.mean(window) >= args.stop_success:
                stop_reason = "window_success"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    vec.close()
    return {
        "seed": seed,
        "first_pick": first_pick,
        "updates": updates,
        "env_steps": env_steps,
        "wall_s": time.perf_counter() - t0,
        "window_success": float(np.mean(window)) if window else 0.0,
        "stop": stop_reason,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = parser.add_argument
    a("--quick", action="store_true", help="a few thousand updates of one seed: checks the loop, finds no pick")
    a("--seeds", default="0,1,2", help="comma-separated seeds, run one after the other")
    a("--max_updates", type=int, default=60_000, help="update budget per seed")
    a("--stop_success", type=float, default=0.5, help="stop a seed once this success over the window is reached")
    a("--window", type=int, default=64, help="training episodes in the success window")
    a("--log_every", type=int, default=2_500, help="updates between curve points")
    a("--label", default="", help="a name for this configuration in the output")
    a("--curves", default="", help="write every seed's curve to this JSON file")
    # The main job's configuration (run_demo.sh) by default.
    a("--num_envs", type=int, default=16)
    a("--utd", type=float, default=0.5, help="updates per inserted transition")
    a("--training_starts", type=int, default=2_000)
    a("--random_steps", type=int, default=2_000)
    a("--publish_every", type=int, default=10, help="updates per fused call; the policy refreshes after each")
    a("--replay_capacity", type=int, default=200_000)
    a("--hidden_dims", default="128,128")
    a("--activation", default="tanh")
    a("--critic_ensemble_size", type=int, default=4)
    a("--batch_size", type=int, default=128)
    a("--critic_actor_ratio", type=int, default=2)
    a("--lr", type=float, default=1e-3)
    a("--discount", type=float, default=0.96)
    a("--n_step", type=int, default=1)
    a("--initial_temperature", type=float, default=0.01)
    a("--target_entropy", type=float, default=None)
    a("--noise_beta", type=float, default=0.0, help="exploration noise colour: 0 white (SAC's own), 1 pink")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.max_updates, args.log_every = "0", 3_000, 1_000
        args.training_starts = args.random_steps = 1_000
    seeds = [int(s) for s in args.seeds.split(",")]
    device = device_name()
    config = {
        k: getattr(args, k)
        for k in ("num_envs", "utd", "training_starts", "random_steps", "publish_every", "hidden_dims", "activation",
                  "critic_ensemble_size", "batch_size", "critic_actor_ratio", "lr", "discount", "n_step",
                  "initial_temperature", "target_entropy", "noise_beta", "max_updates", "window")
    }  # fmt: skip
    config["label"] = args.label
    log(f"first_pick on {device}: {json.dumps(config)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill: the current seed reports what it has
    results = []
    for seed in seeds:
        result = run_seed(args, seed)
        results.append(result)
        if args.curves:  # after every seed: a long sweep cut short keeps what it measured
            with open(args.curves, "w") as f:
                json.dump({"config": config, "device": device, "command": " ".join(sys.argv), "runs": results}, f)
        # Without a pick the figure is the budget spent, a lower bound (config "picked": false).
        pick = result["first_pick"] or {"updates": result["updates"], "env_steps": result["env_steps"],
                                        "wall_s": result["wall_s"]}  # fmt: skip
        for metric, unit in (("updates", "updates"), ("env_steps", "steps"), ("wall_s", "s")):
            emit(BENCH, f"{metric}_to_first_pick", pick[metric], unit,
                 config={**config, "seed": seed, "picked": result["first_pick"] is not None},
                 quick=args.quick, device=device)  # fmt: skip
        emit(BENCH, "window_success_at_stop", result["window_success"], "fraction",
             config={**config, "seed": seed, "stop": result["stop"], "updates": result["updates"]},
             quick=args.quick, device=device)  # fmt: skip
        if result["stop"] == "interrupted":
            break
    # Seeds without a pick count as the updates they ran (a lower bound) in the median.
    picks = [r["first_pick"]["updates"] if r["first_pick"] else r["updates"] for r in results]
    picked = sum(r["first_pick"] is not None for r in results)
    emit(BENCH, "median_updates_to_first_pick", statistics.median(picks), "updates",
         config={**config, "seeds": seeds, "per_seed": picks, "picked": picked}, quick=args.quick,
         device=device)  # fmt: skip


if __name__ == "__main__":
    main()
