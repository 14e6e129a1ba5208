"""The whole GPU ledger in one call on one GPU (benchmarks/results/README.md): JSON lines into a folder.

    scripts/gpu_check.sh run OUT                        # on the GPU machine (sets up the carried wheels first)
    python -m benchmarks.gpu_check --out OUT            # where every package is already installed
    python -m benchmarks.gpu_check --out OUT --dry-run  # any CPU: the same steps at tiny sizes (CI runs it)

Steps, each a subprocess with its own time cap inside one overall budget (default 560 s, so the call ends within
10 minutes with the machine's start outside it); a step that overruns is stopped and keeps the lines it wrote:
  build      gsplat's CUDA extension, started first in the background (it builds every kernel: minutes)
  env_warp   MJX-Warp env steps/s, PandaPickCube, 1k / 4k / 16k envs (bench_env), vs SyncVectorEnv
  env_jax    the same on MJX-JAX at 4k / 16k envs, so the two implementations are compared in one run
  learner    a short DrQ/SAC learner benchmark (bench_learner), while the build may still run
  learner_levers  issue 21: the DrQ update's time breakdown and critic samples/s of each lever beside today's path
             (bench_learner --cases breakdown levers: 64², front + wrist, batch 256), while the build may still run
  render     gsplat vs reference per camera, zero-copy, stream race, render sweep (benchmarks.gpu_render_checks)
  pixel_env  MJX + gsplat pixel env steps/s (bench_env --obs_mode pixels) on the faster MJX implementation
Files in OUT (at most 8 come back from the GPU machine): env.jsonl, learner.jsonl, render_checks.jsonl,
pixel_env.jsonl, summary.json (each step: ok, seconds, exit code), gpu_check.log (every step's stderr),
gsplat_build.log.

A dry run uses cartpole for MJX-JAX (the Panda's MJX-JAX step compiles for minutes on a CPU), MJX-Warp on the
Panda, the render checks over gsplat's real Python with tests/gsplat_standin.py for its CUDA ops, the reference
renderer for the pixel env, and the learner at its --quick sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("env.jsonl", "learner.jsonl", "render_checks.jsonl", "pixel_env.jsonl", "summary.json", "gpu_check.log",
         "gsplat_build.log")  # fmt: skip
BUILD = "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat built nothing'"


@dataclass(frozen=True)
class Plan:
    """Sizes and time caps (seconds) of every step: the ledger's on a GPU, tiny ones for a dry run."""

    dry_run: bool
    env_sizes: str = "1024,4096,16384"
    # MJX-JAX compiles each batch size anew (~60-70 s per size on the H200 machine, 2026-12-04): two sizes fit.
    jax_sizes: str = "4096,16384"
    env_steps: int = 20
    jax_task: str = "PandaPickCube-v0"
    baseline_max_envs: int = 64
    pixel_sizes: str = "1024,4096"
    pixel_image: int = 64
    pixel_backend: str = "gsplat"
    pixel_baseline_envs: int = 16
    learner_args: tuple[str, ...] = ("--cases", "sac_state", "drq_64_1cam", "drq_64_2cam", "--capacity", "20000")
    lever_args: tuple[str, ...] = ("--cases", "breakdown", "levers", "--lever_rounds", "2")
    caps: dict[str, float] = field(
        # Measured on the H200 on 2026-12-04 (benchmarks/results/gpu-check-h200-2026-12-04): Warp's cold CUDA
        # compile made env_warp overrun 110 s (60 s warm); the learner overran 80 s in drq_64_2cam; render
        # took 30 s, pixel_env 48 s.
        # learner_levers: not yet run on a GPU (8 variants compiled, then 2 rounds; sized from the CPU run).
        default_factory=lambda: {"env_warp": 170, "env_jax": 150, "learner": 110, "learner_levers": 150, "render": 60,
                                 "pixel_env": 80}  # fmt: skip
    )

    @staticmethod
    def for_run(dry_run: bool) -> Plan:
        if not dry_run:
            return Plan(dry_run=False)
        return Plan(
            dry_run=True,
            env_sizes="2",
            jax_sizes="2",
            env_steps=2,
            jax_task="CartpoleBalance-v0",
            baseline_max_envs=2,
            pixel_sizes="2",
            pixel_image=16,
            pixel_backend="reference",
            pixel_baseline_envs=1,
            learner_args=("--quick", "--cases", "drq_64_1cam"),
            lever_args=("--quick", "--cases", "levers", "--levers", "bf16", "--lever_rounds", "1",
                        "--lever_iterations", "1"),  # fmt: skip
            caps={"env_warp": 600, "env_jax": 600, "learner": 600, "learner_levers": 600, "render": 600,
                  "pixel_env": 600},  # fmt: skip
        )


class Runner:
    """Runs the steps as subprocesses inside the budget, logs their stderr, records their outcome."""

    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.deadline = time.monotonic() + budget_s
        self.summary: dict[str, dict] = {}
        self.log = open(out / "gpu_check.log", "a")  # noqa: SIM115 (closed in finish)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def note(self, msg: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def step(self, name: str, args: list[str], stdout: str | None, cap: float) -> bool:
        """Runs `python -m args...` with stdout appended to OUT/stdout; False if it failed or was stopped."""
        timeout = min(cap, self.left())
        if timeout < 5:
            self.summary[name] = {"ok": False, "skipped": "out of time"}
            self.note(f"{name}: skipped, {self.left():.0f} s left")
            return False
        self.note(f"{name}: python -m {' '.join(args)} (cap {timeout:.0f} s)")
        start = time.monotonic()
        sink = open(self.out / stdout, "a") if stdout else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.run(
                [sys.executable, "-m", *args], stdout=sink, stderr=self.log, cwd=ROOT, timeout=timeout, check=False
            )
            code, stopped = proc.returncode, False
        except subprocess.TimeoutExpired:
            code, stopped = None, True
        finally:
            if stdout:
                sink.close()
        seconds = round(time.monotonic() - start, 1)
        if stdout:
            self._keep_json_lines(self.out / stdout)
        ok = code == 0
        self.summary[name] = {"ok": ok, "seconds": seconds, "exit_code": code, "stopped_at_cap": stopped}
        self.note(f"{name}: {'ok' if ok else 'FAILED'} in {seconds} s" + (" (stopped at its cap)" if stopped else ""))
        return ok

    def _keep_json_lines(self, path: Path) -> None:
        """Moves lines that are not JSON out of a results file into the log: CUDA kernels' printf (MuJoCo Warp's
        "solver iterations limit reached") writes to the process's stdout, past Python's buffers."""
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        rows = [line for line in lines if line.startswith("{")]
        if len(rows) < len(lines):
            others = [line for line in lines if not line.startswith("{")]
            self.log.write(f"--- {len(others)} non-JSON lines printed into {path.name}:\n" + "\n".join(others) + "\n")
            self.log.flush()
            path.write_text("".join(row + "\n" for row in rows))

    def finish(self, extra: dict) -> dict:
        summary = {"steps": self.summary, **extra}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        self.log.close()
        return summary


def start_build(out: Path, dry_run: bool) -> subprocess.Popen | None:
    """gsplat's CUDA build in the background (no-op in a dry run: the stand-in replaces the compiled ops)."""
    if dry_run:
        return None
    env = dict(os.environ)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / "torch_ext"))
    env.setdefault("MAX_JOBS", "12")  # leaves cores for the MJX compiles that run meanwhile
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    log = open(out / "gsplat_build.log", "w")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen([sys.executable, "-c", BUILD], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def faster_impl(env_jsonl: Path, task: str = "PandaPickCube-v0") -> str:
    """The MJX implementation with more env steps/s on `task` at the largest size both reached (warp if
    unknown, e.g. in a dry run, which measures MJX-JAX on cartpole)."""
    best: dict[str, dict[int, float]] = {}
    if env_jsonl.exists():
        for line in env_jsonl.read_text().splitlines():
            row = json.loads(line)
            impl, n = row["config"].get("mjx_impl"), row["config"]["num_envs"]
            if impl and row["config"].get("task") == task:
                best.setdefault(impl, {})[n] = row["value"]
    common = set(best.get("warp", {})) & set(best.get("jax", {}))
    if not common:
        return "warp"
    n = max(common)
    return "jax" if best["jax"][n] > best["warp"][n] else "warp"


def run(out: Path, dry_run: bool, budget_s: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan.for_run(dry_run)
    runner = Runner(out, budget_s)
    runner.note(f"{'dry run' if dry_run else 'GPU run'}: budget {budget_s:.0f} s, results in {out}")
    build = start_build(out, dry_run)
    env_common = ["--num_envs", plan.env_sizes, "--steps", str(plan.env_steps),
                  "--baseline_max_envs", str(plan.baseline_max_envs)]  # fmt: skip
    runner.step("env_warp", ["benchmarks.bench_env", "--cases", "PandaPickCube-v0:mjx:warp", *env_common],
                "env.jsonl", plan.caps["env_warp"])  # fmt: skip
    jax_common = ["--num_envs", plan.jax_sizes, *env_common[2:]]
    runner.step("env_jax", ["benchmarks.bench_env", "--cases", f"{plan.jax_task}:mjx:jax", *jax_common],
                "env.jsonl", plan.caps["env_jax"])  # fmt: skip
    runner.step("learner", ["benchmarks.bench_learner", *plan.learner_args], "learner.jsonl", plan.caps["learner"])
    runner.step("learner_levers", ["benchmarks.bench_learner", *plan.lever_args], "learner.jsonl",
                plan.caps["learner_levers"])  # fmt: skip
    build_ok = True
    if build is not None:
        runner.note("waiting for gsplat's CUDA build ...")
        try:
            build_ok = build.wait(timeout=max(1.0, runner.left() - 60)) == 0
        except subprocess.TimeoutExpired:
            build.kill()
            build_ok = False
        runner.summary["build"] = {"ok": build_ok, "log": "gsplat_build.log"}
        runner.note(f"gsplat build {'done' if build_ok else 'FAILED or out of time'}")
    if build_ok:
        render_args = ["benchmarks.gpu_render_checks", "--out", str(out)] + (["--dry-run"] if dry_run else [])
        runner.step("render", render_args, None, plan.caps["render"])
        impl = faster_impl(out / "env.jsonl")
        pixel_args = ["benchmarks.bench_env", "--cases", f"PandaPickCube-v0:mjx:{impl}", "--obs_mode", "pixels",
                      "--image_size", str(plan.pixel_image), "--render_backend", plan.pixel_backend,
                      "--num_envs", plan.pixel_sizes, "--steps", str(plan.env_steps),
                      "--baseline_max_envs", str(plan.pixel_baseline_envs)]  # fmt: skip
        runner.step("pixel_env", pixel_args, "pixel_env.jsonl", plan.caps["pixel_env"])
    summary = runner.finish({"dry_run": dry_run, "budget_s": budget_s, "files": list(FILES)})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the JSON lines (created)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on a CPU: MJX-Warp, the gsplat stand-in")
    parser.add_argument("--budget_s", type=float, default=None, help="overall time budget, seconds "
                        "(default 560 on a GPU: the call ends within 10 minutes; 1800 for a dry run on a slow CPU)")
    args = parser.parse_args()
    budget = args.budget_s if args.budget_s is not None else (1800.0 if args.dry_run else 560.0)
    if budget <= 0:
        raise SystemExit(f"--budget_s must be positive, got {budget}")
    summary = run(Path(args.out), args.dry_run, budget)
    failed = [name for name, step in summary["steps"].items() if not step.get("ok")]
    print(json.dumps({"gpu_check": "done", "failed": failed}), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
