"""The whole system for a fixed time: a learner and an actor as separate processes on localhost.

    python -m benchmarks.bench_e2e --quick                   # one size, ~1 minute on 2 CPU cores
    python -m benchmarks.bench_e2e --num_envs 1,4,16,64      # the scaling table
    python -m benchmarks.bench_e2e --num_envs 256,1024 --physics mjx --paths fused     # at scale on a CPU (MJX-Warp)
    python -m benchmarks.bench_e2e --num_envs 256,1024,4096 --physics mjx --obs_mode pixels --paths fused  # a GPU

Per --num_envs, one JSON line each for: env steps/s at the actor, updates/s at the learner, critic samples/s
(updates/s x batch_size x critic_actor_ratio: transitions the critic trains on), the learner's idle fraction (time
waiting for data / time in its loop), the actor's credit-wait fraction (time blocked on the learner's credit /
wall time), and the record bytes/s arriving at the learner (the wire's payload). Rates are taken from the nodes'
own metric logs over the measurement window, after a warm-up (compilation, random steps, training_starts).

Each size runs twice, learner paths side by side (--paths): `fused` (the learner's default: --publish_every
updates per jitted call, sampling inside it) and `one_per_call` (--updates_per_call 1: sample, then update, one
update per call, the learner's path before fused calls); the fused updates/s line carries the other as its
baseline. The learner's agent is the main job's (run_demo.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import emit, log
from serl_gs.nodes.metrics_log import read_metrics


def _port_base() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1] if s.getsockname()[1] < 65000 else 20000


def _window_rate(rows: list[dict], key: str, since: float) -> float | None:
    """Mean rate of counter `key` per second over rows logged after `since` (wall-clock)."""
    rows = [r for r in rows if r["time"] >= since and key in r]
    if len(rows) < 2:
        return None
    return (rows[-1][key] - rows[0][key]) / (rows[-1]["time"] - rows[0]["time"])


PATHS = {"fused": "0", "one_per_call": "1"}  # --updates_per_call of each learner path
BATCH_SIZE, CRITIC_ACTOR_RATIO = 128, 2  # the learner's minibatch and critic steps per update


def run_once(args: argparse.Namespace, num_envs: int, workdir: Path, path: str) -> dict[str, float]:
    run_dir = workdir / f"e2e-{num_envs}-{path}"
    port = _port_base()
    common = ["--env", args.env, "--obs_mode", args.obs_mode, "--image_size", str(args.image_size)]
    actor_physics = ["--physics", args.physics]
    learner_cmd = [
        sys.executable, "-m", "learners.learner", *common, "--run_dir", str(run_dir), "--port", str(port),
        "--training_starts", str(args.training_starts), "--utd", str(args.utd), "--log_every_s", "2",
        "--hidden_dims", "128", "128", "--critic_ensemble_size", "4", "--batch_size", str(BATCH_SIZE),
        "--critic_actor_ratio", str(CRITIC_ACTOR_RATIO), "--n_step", "3", "--replay_capacity",
        str(args.replay_capacity), "--publish_every", "10", "--updates_per_call", PATHS[path],
        "--checkpoint_every", "1000000", "--no_save_replay",
        "--max_seconds", str(args.timeout + args.warmup + args.seconds + 60),  # a safety net: stopped by SIGINT
    ]  # fmt: skip
    actor_cmd = [
        sys.executable, "-m", "actors.actor", *common, *actor_physics, "--port", str(port), "--num_envs", str(num_envs),
        "--random_steps", "0", "--run_dir", str(run_dir), "--log_every_s", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = workdir / f"learner-{num_envs}-{path}.log", workdir / f"actor-{num_envs}-{path}.log"
    with open(logs[0], "w") as llog, open(logs[1], "w") as alog:
        # SIGINT stops the nodes (they save and flush): un-ignore it, as a shell's background job ignores it.
        sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        learner = subprocess.Popen(learner_cmd, stdout=llog, stderr=subprocess.STDOUT, env=env, preexec_fn=sigint)
        actor = subprocess.Popen(actor_cmd, stdout=alog, stderr=subprocess.STDOUT, env=env, preexec_fn=sigint)
        try:
            start = time.time()
            # The window opens once the learner trains (compiled, past training_starts) plus the warm-up.
            while time.time() - start < args.timeout:
                rows = read_metrics(run_dir / "learner_metrics.jsonl")
                if rows and rows[-1].get("updates", 0) > 0:
                    break
                if learner.poll() is not None or actor.poll() is not None:
                    tails = "\n".join(f"--- {p.name}:\n" + "".join(p.read_text().splitlines(True)[-15:]) for p in logs)
                    raise RuntimeError(f"a node exited early:\n{tails}")
                time.sleep(1.0)
            time.sleep(args.warmup)
            window_start = time.time()
            time.sleep(args.seconds)
        finally:
            actor.send_signal(signal.SIGINT)
            learner.send_signal(signal.SIGINT)
            for p in (actor, learner):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    learner_rows = [r for r in read_metrics(run_dir / "learner_metrics.jsonl") if r["time"] >= window_start]
    actor_rows = read_metrics(run_dir / "actor_actor0_metrics.jsonl")
    idle = [r["idle_fraction"] for r in learner_rows if "idle_fraction" in r]
    waits = [r["credit_wait_fraction"] for r in actor_rows if r["time"] >= window_start and "credit_wait_fraction" in r]
    updates_per_s = _window_rate(learner_rows, "updates", window_start) or 0.0
    return {
        "env_steps_per_s": _window_rate(actor_rows, "env_steps", window_start) or 0.0,
        "updates_per_s": updates_per_s,
        "critic_samples_per_s": updates_per_s * BATCH_SIZE * CRITIC_ACTOR_RATIO,
        "learner_idle_fraction": sum(idle) / len(idle) if idle else float("nan"),
        "actor_credit_wait_fraction": sum(waits) / len(waits) if waits else float("nan"),
        "wire_bytes_per_s": _window_rate(learner_rows, "bytes_in", window_start) or 0.0,
        "tolerance": max((r.get("tolerance", 0.0) for r in learner_rows), default=float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one size (16 envs), short window")
    parser.add_argument("--num_envs", default=None, help="comma list (default 1,4,16,64; quick: 16)")
    parser.add_argument("--env", default="serl_gs/PandaPickCube-v0")
    parser.add_argument("--obs_mode", default="state", choices=["state", "pixels"])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--physics", default="auto", choices=["auto", "mjx", "mujoco"], help="the actor's physics")
    parser.add_argument("--replay_capacity", type=int, default=200_000)
    parser.add_argument("--utd", type=float, default=0.5)
    parser.add_argument("--training_starts", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=None, help="measurement window (default 20; quick 10)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="max wait for the learner's first update")
    parser.add_argument("--workdir", default=None, help="keep the nodes' logs and run dirs here (default: a temp dir)")
    parser.add_argument("--paths", default="fused,one_per_call", help=f"learner paths, of {sorted(PATHS)}")
    args = parser.parse_args()
    sizes = [int(n) for n in (args.num_envs or ("16" if args.quick else "1,4,16,64")).split(",")]
    args.seconds = args.seconds or (10.0 if args.quick else 20.0)
    paths = args.paths.split(",")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown --paths {unknown}; known: {sorted(PATHS)}")
    paths.sort(key=lambda p: p != "one_per_call")  # the baseline first, so the fused line can carry it
    where = contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="serl_gs_e2e_")
    with where as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for n in sizes:
            results = {}
            for path in paths:
                log(f"e2e: {args.env} {args.obs_mode} num_envs={n}, learner path {path} ...")
                results[path] = figures = run_once(args, n, Path(tmp), path)
                config = {"env": args.env, "obs_mode": args.obs_mode, "num_envs": n, "utd": args.utd,
                          "window_s": args.seconds, "learner_path": path, "physics": args.physics,
                          "tolerance": figures["tolerance"]}  # fmt: skip
                if args.obs_mode == "pixels":
                    config["image_size"] = args.image_size
                baseline = results.get("one_per_call") if path == "fused" else None
                emit("e2e", "env_steps_per_s", figures["env_steps_per_s"], "1/s", config=config, quick=args.quick)
                emit("e2e", "updates_per_s", figures["updates_per_s"], "1/s", config=config, quick=args.quick,
                     baseline="one_per_call" if baseline else None,
                     baseline_value=baseline["updates_per_s"] if baseline else None)  # fmt: skip
                emit("e2e", "learner_idle_fraction", figures["learner_idle_fraction"], "fraction", config=config,
                     quick=args.quick)  # fmt: skip
                for metric, unit in (("critic_samples_per_s", "1/s"), ("actor_credit_wait_fraction", "fraction"),
                                     ("wire_bytes_per_s", "B/s")):  # fmt: skip
                    emit("e2e", metric, figures[metric], unit, config=config, quick=args.quick)


if __name__ == "__main__":
    main()
