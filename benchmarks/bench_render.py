"""Render-stage throughput: one batched call for all envs versus a Python loop over envs (the seed's design),
per backend, and the render stage's share of a full env step.

    python -m benchmarks.bench_render --quick          # < 1 min on a 2-core CPU: 64x64, up to 8 envs
    python -m benchmarks.bench_render                  # full sweep: 64/128/256 px, up to 4096 envs on a GPU
    python -m benchmarks.bench_render --backends gsplat --sizes 64,128 --num_envs 1024,4096 --no_env_step
                                                       # a chosen slice: fits a short GPU lease

The render share of an env step builds a vector env of the same size (on a GPU: MJX, compiled per batch
size, minutes at thousands of envs); `--no_env_step` leaves it out.

One JSON line per figure on stdout (benchmarks/_report.py); progress on stderr.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import mujoco
import numpy as np

from benchmarks._report import emit, log
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.stage import RenderStage

ROOT = Path(__file__).resolve().parents[1]
TASK = "PandaPickCube-v0"
ASSET = ROOT / "envs" / "assets" / "panda_pick_cube.xml"


def timed(fn, min_seconds: float, sync=lambda: None) -> float:
    """Seconds per call: one warm-up call, then repeats until `min_seconds` have passed (at least twice)."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        fn()
        sync()
        calls += 1
    return (time.perf_counter() - start) / calls


def paired_medians(fn_a, fn_b, rounds: int, sync=lambda: None) -> tuple[float, float]:
    """Median seconds per call of two functions timed in alternation (a, b, a, b, ...), so both see the same
    machine: on a shared CPU the load changes by the second, and a ratio of two separate runs is noise."""
    fn_a(), fn_b()
    sync()
    times_a, times_b = [], []
    for _ in range(rounds):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def batched_poses(model: mujoco.MjModel, num_envs: int, seed: int = 0) -> list[np.ndarray]:
    """MuJoCo data fields for `num_envs` envs at distinct poses around the model's first keyframe."""
    data = mujoco.MjData(model)
    rng = np.random.default_rng(seed)
    movable = [
        model.jnt_qposadr[j]
        for j in range(model.njnt)
        if model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    ]
    out = {k: [] for k in ("xpos", "xquat", "cam_xpos", "cam_xmat")}
    for _ in range(num_envs):
        if model.nkey:
            mujoco.mj_resetDataKeyframe(model, data, 0)
        data.qpos[movable] += 0.05 * rng.normal(size=len(movable))
        mujoco.mj_forward(model, data)
        for k in out:
            out[k].append(getattr(data, k).astype(np.float32))
    return [np.stack(out[k]) for k in ("xpos", "xquat", "cam_xpos", "cam_xmat")]


def env_step_seconds(num_envs: int, min_seconds: float) -> tuple[float, str] | None:
    """(seconds per state-only vector-env step, physics path), or None without envs/. A step is physics,
    reward and autoreset for all envs."""
    try:
        import gymnasium as gym

        import envs  # noqa: F401
    except ImportError:
        return None
    from serl_gs.env_options import resolve_physics

    env = gym.make_vec(f"serl_gs/{TASK}", num_envs=num_envs, array_backend="numpy")
    env.reset(seed=0)
    env.action_space.seed(0)
    try:
        return timed(lambda: env.step(env.action_space.sample()), min_seconds), resolve_physics("auto")
    finally:
        env.close()


def batched_and_loop(stage: RenderStage, poses, rounds: int, sync, with_loop: bool):
    """Seconds per render of all envs in one batched call and, if asked, as a Python loop of one-env calls."""
    num_envs = len(poses[0])

    def batched():
        stage.render(*poses)

    def loop():
        for b in range(num_envs):
            stage.render(*(a[b : b + 1] for a in poses))

    if not with_loop:
        return timed(batched, 0.0, sync), None
    return paired_medians(batched, loop, rounds, sync)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64, up to 8 envs: < 1 min on 2 cores")
    parser.add_argument("--backends", default="", help="comma list (default: reference, + gsplat on CUDA)")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds per figure (default 3, quick 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--sizes", default="", help="comma list of image sides (default 64,128,256; quick 64)")
    parser.add_argument("--num_envs", default="", help="comma list of env counts (default: per backend)")
    parser.add_argument("--no_env_step", action="store_true", help="skip the render share of an env step")
    parser.add_argument("--loop_max_envs", type=int, default=0,
                        help="largest batch also timed as a Python loop (default 64 on GPU, 16 on CPU)")  # fmt: skip
    args = parser.parse_args(argv)
    sizes = _int_list(args.sizes, "--sizes")
    env_counts = _int_list(args.num_envs, "--num_envs")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    backends = [b for b in args.backends.split(",") if b]
    backends = backends or (["gsplat", "reference"] if cuda else ["reference"])
    rounds = args.rounds or (3 if args.quick else 5)
    sizes = sizes or ([64] if args.quick else [64, 128, 256])
    model = mujoco.MjModel.from_xml_path(str(ASSET))
    scene_config = SceneConfig(cache_dir=None)

    for backend in backends:
        on_gpu = backend == "gsplat" or (cuda and backend == "reference")
        sync = torch.cuda.synchronize if on_gpu else (lambda: None)
        if env_counts:
            batches = env_counts
        elif args.quick:
            batches = [1, 8]
        elif backend == "gsplat":
            batches = [1, 16, 256, 1024, 4096]
        else:
            batches = [1, 4, 16, 64] if not cuda else [1, 16, 256]
        for size in sizes:
            config = RenderConfig(backend=backend, image_size=size, cameras=("front", "wrist"))
            stage = RenderStage(model, config, scene_config=scene_config)
            log(f"{backend} ({stage.backend_reason}) {size}x{size}: {stage.scene.num_gaussians} Gaussians")
            for num_envs in batches:
                poses = batched_poses(model, num_envs)
                if on_gpu:
                    poses = [torch.as_tensor(p, device="cuda") for p in poses]
                with_loop = 1 < num_envs <= (args.loop_max_envs or (64 if on_gpu else 16))  # the slow baseline
                per_batch, per_loop = batched_and_loop(stage, poses, rounds, sync, with_loop)
                images = num_envs * len(stage.camera_names)
                cfg = {
                    "backend": backend,
                    "torch_threads": torch.get_num_threads() if not on_gpu else None,
                    "image_size": size,
                    "num_envs": num_envs,
                    "cameras": list(stage.camera_names),
                    "gaussians": stage.scene.num_gaussians,
                    "scene": TASK,
                }
                if per_loop is None:
                    emit("render", "images_per_s", images / per_batch, "1/s", config=cfg, quick=args.quick)
                else:
                    emit("render", "images_per_s", images / per_batch, "1/s", config=cfg, quick=args.quick,
                         baseline="python_loop_over_envs", baseline_value=images / per_loop)  # fmt: skip
                if size == sizes[0] and not args.no_env_step:
                    measured = env_step_seconds(num_envs, 0.2 if args.quick else 1.0)
                    if measured is not None:
                        step, physics = measured
                        share = per_batch / (per_batch + step)
                        emit("render", "render_share_of_env_step_lower_is_better", share, "fraction",
                             config={**cfg, "env_step_s": round(step, 6), "render_s": round(per_batch, 6),
                                     "physics": f"{physics} (state-only vector env step)"},
                             quick=args.quick)  # fmt: skip
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{flag} takes a comma list of positive integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise SystemExit(f"{flag} takes a comma list of positive integers, got {text!r}")
    return values


if __name__ == "__main__":
    raise SystemExit(main())
