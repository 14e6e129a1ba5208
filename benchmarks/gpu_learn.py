"""One short GPU run that learns (issue 20): a learner and an actor process on one GPU train DrQ on pixel
PandaPickCube (front + wrist 3DGS, MJX-Warp + gsplat, 1,024 envs) until 90 % training success or the time cap,
then the eval (success, return, a video of the frames the policy saw). Everything inside one budget.

    scripts/gpu_learn.sh OUT                         # the GPU machine (the bundle staged), or any CUDA install
    python -m benchmarks.gpu_learn --out OUT         # where every package is installed
    python -m benchmarks.gpu_learn --out OUT --dry-run   # any CPU: the same at tiny sizes (CI runs it)

Order: gsplat's CUDA build starts first in the background (minutes when cold; a warm machine's
TORCH_EXTENSIONS_DIR skips it), the learner starts and compiles meanwhile, the actor starts once gsplat is
built, the learner stops itself (--stop_success, or --max_seconds set from what is left of the budget minus the
eval's share), the actor is stopped, the eval runs on the final checkpoint. Files in OUT (8, all come back from
the GPU machine): summary.json (the outcome and every step's seconds; also printed as one JSON line),
curve.json (training episodes' success and return, updates and transitions against wall-clock, from the learner's
metrics; the learner's last line, in summary.json, says what ended training and the success over its window),
learner.log, actor.log, eval.log, eval_summary.json, eval.mp4 (the policy's own frames), gsplat_build.log.
The run directory (checkpoints) is outside OUT: --run_dir, default a temporary folder.

The dry run: 2 envs at 8², MJX-Warp on the CPU, the reference renderer, 4 updates, 2 eval episodes on CPU MuJoCo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.gpu_check import start_build

ROOT = Path(__file__).resolve().parents[1]
FILES = ("summary.json", "curve.json", "learner.log", "actor.log", "eval.log", "eval_summary.json", "eval.mp4",
         "gsplat_build.log")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """The run: learner and actor run the preset gpu_pixels (serl_gs.nodes.presets: 32², front + wrist, 2 critics,
    32-channel convs, 1,024 MJX-Warp + gsplat envs, to 90 % training success; not yet run on a GPU); the dry run
    overrides it with tiny sizes. The eval's sizes are this plan's own."""

    dry_run: bool
    preset: str = "gpu_pixels"
    learner_overrides: tuple[str, ...] = ()  # flags over the preset (the dry run's sizes)
    actor_overrides: tuple[str, ...] = ()
    eval_physics: str = "mjx"
    eval_render_backend: str = "gsplat"
    eval_envs: int = 64
    eval_episodes: int = 64
    eval_reserve_s: float = 100.0  # the eval's share of the budget (its compile, 64 episodes, the video)

    @staticmethod
    def for_run(dry_run: bool) -> Plan:
        if not dry_run:
            return Plan(dry_run=False)
        env = ("--image_size", "8", "--episode_length", "8")
        return Plan(
            dry_run=True,
            learner_overrides=(*env, "--batch_size", "8", "--utd", "0.5", "--training_starts", "16",
                               "--replay_capacity", "1000", "--max_updates", "4", "--success_window", "2",
                               "--log_every_s", "2", "--publish_every", "2", "--checkpoint_every", "2"),
            # MJX-Warp on the CPU with the reference renderer: the actor covers MJX
            actor_overrides=(*env, "--num_envs", "2", "--render_backend", "reference", "--random_steps", "16",
                             "--log_every_s", "2"),
            eval_physics="mujoco",  # MJX-Warp's CPU setup would double the dry run
            eval_render_backend="reference",
            eval_envs=2,
            eval_episodes=2,
            eval_reserve_s=300.0,
        )  # fmt: skip

    def learner_args(self, run_dir: Path, port: int, max_seconds: float) -> list[str]:
        return ["--preset", self.preset, "--run_dir", str(run_dir), "--port", str(port),
                "--max_seconds", f"{max_seconds:.0f}", *self.learner_overrides]  # fmt: skip

    def actor_args(self, run_dir: Path, port: int) -> list[str]:
        return ["--preset", self.preset, "--learner_host", "127.0.0.1", "--port", str(port), "--run_dir", str(run_dir),
                *self.actor_overrides]  # fmt: skip

    def eval_args(self, run_dir: Path, out: Path) -> list[str]:
        return ["--checkpoint", str(run_dir), "--num_envs", str(self.eval_envs), "--episodes",
                str(self.eval_episodes), "--physics", self.eval_physics, "--render_backend", self.eval_render_backend,
                "--video_episodes", "2", "--video_size", "128", "--policy_frames", "--out_dir", str(out)]  # fmt: skip


def versions() -> dict:
    """The packages this run used: on the GPU machine torch and JAX are its own, not requirements.txt's pins."""
    import importlib.metadata as md

    found = {}
    for name in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "torch", "mujoco", "mujoco-mjx",
                 "warp-lang", "gsplat"):  # fmt: skip
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return found


def ffmpeg_found() -> str | None:
    """The ffmpeg that imageio would write the eval video with, or None (the GPU bundle carries imageio-ffmpeg
    without its binary, scripts/gpu_bundle.sh: there the machine's own ffmpeg is used if it has one)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def _node(module: str, args: list[str], log: Path, env: dict) -> subprocess.Popen:
    sink = open(log, "w")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env
    )


def _stop(proc: subprocess.Popen, timeout: float) -> int | None:
    """SIGINT (the nodes finish cleanly on it), then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def curve(metrics: Path) -> list[dict]:
    """Updates, transitions, and the success and return of the training episodes that ended in each logging
    interval, against wall-clock, from the learner's metric rows (one per --log_every_s)."""
    from serl_gs.nodes.metrics_log import read_metrics

    rows = read_metrics(metrics)
    if not rows:
        return []
    t0 = rows[0]["time"]
    keys = ("updates", "transitions", "updates_per_s", "success", "episode_return")
    return [{"wall_s": round(r["time"] - t0, 1), **{k: r[k] for k in keys if k in r}} for r in rows]


def _last_line(path: Path, prefix: str) -> str | None:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith(prefix)]
    return lines[-1] if lines else None


def run(out: Path, dry_run: bool, budget_s: float, port: int, run_dir: Path) -> dict:
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan.for_run(dry_run)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / "torch_ext"))
    summary: dict = {"dry_run": dry_run, "budget_s": budget_s, "versions": versions(), "steps": {}}
    steps = summary["steps"]

    def left() -> float:
        return budget_s - (time.monotonic() - start)

    def note(msg: str) -> None:
        print(f"[gpu_learn {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    note(f"{'dry run' if dry_run else 'GPU run'}: budget {budget_s:.0f} s; {summary['versions']}; run in {run_dir}")
    build = start_build(out, dry_run)
    max_seconds = max(10.0, left() - plan.eval_reserve_s)
    learner = _node("learners.learner", plan.learner_args(run_dir, port, max_seconds), out / "learner.log", env)
    actor, built = None, True
    try:
        if build is not None:
            t = time.monotonic()
            try:
                built = build.wait(timeout=max(1.0, left() - plan.eval_reserve_s - 30)) == 0
            except subprocess.TimeoutExpired:
                build.kill()
                built = False
            steps["gsplat_build"] = {"ok": built, "seconds": round(time.monotonic() - t, 1)}
            if not built:
                note("gsplat's CUDA build failed or ran out of time (gsplat_build.log): no training")
                _stop(learner, 30)
                summary.update(seconds=round(time.monotonic() - start, 1), ok=False)
                (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
                return summary
        t_train = time.monotonic()
        actor = _node("actors.actor", plan.actor_args(run_dir, port), out / "actor.log", env)
        try:
            learner_code = learner.wait(timeout=max(1.0, left() - plan.eval_reserve_s + 20))
        except subprocess.TimeoutExpired:
            learner_code = _stop(learner, 30)
        actor_code = _stop(actor, 20)  # its learner is gone: what it still holds has nowhere to go
        steps["train"] = {"ok": learner_code == 0, "seconds": round(time.monotonic() - t_train, 1),
                          "learner_exit": learner_code, "actor_exit": actor_code,
                          "ended": _last_line(out / "learner.log", "[learner] stopped")}  # fmt: skip
    finally:
        for proc in (actor, learner):
            if proc is not None and proc.poll() is None:
                _stop(proc, 30)
    points = curve(run_dir / "learner_metrics.jsonl")
    (out / "curve.json").write_text(json.dumps(points, indent=1) + "\n")
    if points:
        summary["training"] = points[-1]

    t = time.monotonic()
    eval_dir = Path(tempfile.mkdtemp(prefix="gpu_learn_eval_"))
    eval_args = plan.eval_args(run_dir, eval_dir)
    if ffmpeg_found() is None:  # the eval's numbers still count; the missing video is said, here and in summary
        summary["video"] = "none: no ffmpeg for imageio here (install imageio-ffmpeg, or ffmpeg on PATH)"
        note(f"eval without its video: {summary['video']}")
        eval_args[eval_args.index("--video_episodes") + 1] = "0"
    with open(out / "eval.log", "w") as log:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "actors.evaluate", *eval_args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=max(10.0, left()), check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    steps["eval"] = {"ok": code == 0, "seconds": round(time.monotonic() - t, 1), "stopped_at_budget": code is None}
    if (eval_dir / "summary.json").exists():
        result = json.loads((eval_dir / "summary.json").read_text())
        shutil.copy(eval_dir / "summary.json", out / "eval_summary.json")
        keys = ("step", "episodes", "success_rate", "success_ci95", "return_mean", "return_std")
        summary["eval"] = {k: result[k] for k in keys if k in result}
    if (eval_dir / "eval.mp4").exists():
        shutil.copy(eval_dir / "eval.mp4", out / "eval.mp4")
        summary["video"] = "eval.mp4"
    shutil.rmtree(eval_dir, ignore_errors=True)
    summary["seconds"] = round(time.monotonic() - start, 1)
    summary["ok"] = all(step["ok"] for step in steps.values())
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the results (created)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on a CPU: MJX-Warp, the reference renderer")
    parser.add_argument(
        "--budget_s", type=float, default=None, help="overall budget, seconds (default 540 on a GPU; 1800 dry)"
    )
    parser.add_argument("--port", type=int, default=5620, help="the learner's port (and the next two)")
    parser.add_argument("--run_dir", default="", help="checkpoints and metrics; default a new temporary folder")
    args = parser.parse_args()
    # A dry run's budget only guards against a hang: on a shared 2-core machine it took 8 minutes (load ~20).
    budget = args.budget_s if args.budget_s is not None else (1800.0 if args.dry_run else 540.0)
    if budget <= 0:
        raise SystemExit(f"--budget_s must be positive, got {budget}")
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="gpu_learn_run_"))
    summary = run(Path(args.out), args.dry_run, budget, args.port, run_dir)
    print(json.dumps({"gpu_learn": "done", **{k: summary.get(k) for k in ("ok", "seconds", "training", "eval")}}))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
