"""Updates to the first pick: state SAC on PandaPickCube through the real nodes, per seed.

The main job (run_demo.sh) in one process: a `Learner` and `run_actor` as two threads on OS-picked ports (as
tests/test_nodes_learner.py runs them), so the figures come from the same adder, transport, replay, rate limiter
and fused updates the nodes run, not from a copy of their loop. One actor of `--num_envs` envs: uniform random
actions for `--random_steps` env steps, then the stochastic policy; the learner keeps `--utd` updates per
transition after `--training_starts` and publishes every `--publish_every` updates.

Per seed it reports the updates, env steps and seconds to the first training episode that ends with the cube
lifted (the learner's `success`), and training success over the last `--window` episodes when it stops: at
`--stop_success` over the window (the learner's own stop), or at `--max_updates`. One JSON line per figure
(../shared/BENCHMARKS.md), then the median over seeds; `--curves FILE` writes every seed's curve (updates, env
steps, s, training success over the window so far).

    python -m benchmarks.first_pick --quick                                  # a few minutes: the loop runs, no pick
    nice -n 10 python -m benchmarks.first_pick --seeds 0,1,2 --max_updates 60000 --n_step 3 --noise_beta 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._report import device_name, emit, log  # noqa: E402

BENCH = "first_pick"
ENV_ID = "serl_gs/PandaPickCube-v0"
POLL_S = 0.05  # how often the benchmark thread looks at the learner's counters


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


def node_configs(args, seed: int, run_dir: str):
    """The learner's and the actor's configs for one seed: the learner on OS-picked ports, the actor's filled in
    once the learner has bound them (`actor_for`)."""
    from serl_gs.data.replay import ReplayConfig
    from serl_gs.nodes.actor import ActorConfig
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.nodes.learner import LearnerConfig
    from serl_gs.nodes.rate_limiter import RateLimiterConfig
    from serl_gs.transport import ActorTransportConfig, LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    env = EnvSpec(ENV_ID, physics="mujoco")
    learner = LearnerConfig(
        env=env,
        agent=agent_config(args),
        replay=ReplayConfig(capacity=args.replay_capacity),
        rate=RateLimiterConfig(utd=args.utd, min_inserts=args.training_starts, tolerance=200.0, auto=True),
        transport=LearnerTransportConfig(**port_layout(0)),
        run_dir=run_dir,
        publish_every=args.publish_every,
        checkpoint_every=10**9,  # no checkpoint while learning: one at the end (Learner.run)
        save_replay=False,
        max_updates=args.max_updates,
        stop_success=args.stop_success,
        success_window=args.window,
        seed=seed,
        log_every_s=30.0,
    )

    def actor_for(node) -> ActorConfig:
        transport = ActorTransportConfig(
            actor_id="a0",
            transitions_port=node.server.port,
            params_port=node.publisher.port,
            params_snapshot_port=node.publisher.snapshot_port,
            block_timeout_s=0.2,
        )
        return ActorConfig(env=env, transport=transport, num_envs=args.num_envs, random_steps=args.random_steps,
                           seed=seed, log_every_s=30.0, noise_beta=args.noise_beta)  # fmt: skip

    return learner, actor_for


def watch(args, seed: int, learner, threads, t0: float) -> tuple[dict | None, list[dict], str | None]:
    """Polls the learner's counters until its thread ends (or the actor's, on an error): the first pick, the
    curve, and "interrupted" on SIGTERM / Ctrl-C (see main), where the seed reports what it has."""
    first_pick, curve, next_log = None, [], args.log_every
    try:
        for t in threads:
            t.start()
        while threads[0].is_alive() and threads[1].is_alive():  # the learner ends the run; an actor error too
            updates, env_steps = learner.counters["updates"], learner.counters["transitions"]
            if first_pick is None and any(list(learner.success_window)):
                first_pick = {"updates": updates, "env_steps": env_steps, "wall_s": time.perf_counter() - t0}
                log(f"seed {seed}: first pick at {updates} updates, {env_steps} env steps")
            if updates >= next_log:
                window = list(learner.success_window)
                row = {"updates": updates, "env_steps": env_steps, "wall_s": round(time.perf_counter() - t0, 1),
                       "window_success": round(sum(window) / len(window), 3) if window else 0.0}  # fmt: skip
                curve.append(row)
                log(f"seed {seed}: {json.dumps(row)}")
                next_log += args.log_every
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return first_pick, curve, "interrupted"
    return first_pick, curve, None


def run_seed(args, seed: int) -> dict:
    """One training run through the nodes; returns its first-pick figures, final window success and curve."""
    from serl_gs.nodes.actor import run_actor
    from serl_gs.nodes.learner import Learner

    outcome: dict[str, object] = {}

    def keep(name, fn, *fn_args):
        try:
            outcome[name] = fn(*fn_args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the benchmark's thread
            outcome[name] = e

    # The nodes' console lines go to stderr with the progress: stdout carries only the JSON figures.
    with contextlib.redirect_stdout(sys.stderr), tempfile.TemporaryDirectory(prefix="first_pick-") as run_dir:
        learner_config, actor_for = node_configs(args, seed, run_dir)
        learner = Learner(learner_config)
        stop_learner, stop_actor = threading.Event(), threading.Event()
        threads = [threading.Thread(target=keep, args=("learner", learner.run, stop_learner), daemon=True),
                   threading.Thread(target=keep, args=("actor", run_actor, actor_for(learner), stop_actor),
                                    daemon=True)]  # fmt: skip
        t0 = time.perf_counter()
        try:
            first_pick, curve, stop_reason = watch(args, seed, learner, threads, t0)
        finally:
            stop_actor.set()
            stop_learner.set()
            for t in threads:
                t.join(120)
            learner.close()
        wall_s = time.perf_counter() - t0
    for name in ("learner", "actor"):
        if isinstance(outcome.get(name), BaseException):
            raise RuntimeError(f"the {name} failed") from outcome[name]
    final = outcome.get("learner") or {}
    window = list(learner.success_window)
    return {
        "seed": seed,
        "first_pick": first_pick,
        "updates": int(learner.counters["updates"]),
        "env_steps": int(learner.counters["transitions"]),
        "wall_s": wall_s,
        "window_success": sum(window) / len(window) if window else 0.0,
        "stop": stop_reason or final.get("stop_reason", "unknown"),
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
        args.seeds, args.max_updates, args.log_every = "0", 1_000, 250
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
