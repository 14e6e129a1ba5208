"""The render half of the GPU ledger in one call: gsplat vs reference per camera, zero-copy across the
JAX <-> torch bridge, a stream-race stress, and the render sweep. JSON lines go to a folder.

    python -m benchmarks.gpu_render_checks --out results/gpu          # on a GPU: the ledger's sizes
    python -m benchmarks.gpu_render_checks --out /tmp/x --dry-run     # any CPU: same steps, tiny sizes,
                                                                      # gsplat's Python over tests/gsplat_standin.py

From Python (scripts/gpu_check calls this): `run_checks(out_dir, dry_run=False, checks=CHECKS)` returns the
rows it wrote to `<out_dir>/render_checks.jsonl` (one JSON object per line, benchmarks/_report.py's format;
pass/fail rows carry "ok"). The exit code is 1 if any row has "ok": false.

Checks:
- agreement: every task scene (envs/assets/*.xml) and a random SH-3 scene, 4 envs at perturbed poses, each
  camera: gsplat vs the reference renderer, MAE and max error in uint8 levels, PSNR, depth error.
  Limits: MAE <= 0.5 levels and PSNR >= 40 dB per camera (float rounding and fast-math only; the CPU
  stand-in agrees to 1e-7).
- zero_copy: the stage fed JAX device arrays: input and output buffers are shared (pointers), and the CUDA
  host<->device copies during a render (torch.profiler / CUPTI, every library in the process) are only
  scalars (<= 64 bytes each: gsplat reads its packed counts), under `jax.transfer_guard("disallow")`.
- stream_race: poses produced by a long jitted computation are rendered at once, the images consumed at once
  by a jitted reduction; any missing stream order shows as a sum that differs from the expected images'.
- sweep: 1k and 4k envs x 64^2, 128^2, 256^2 (Panda, front + wrist): images/s batched vs a loop of one-env
  calls, peak torch memory, envs per gsplat call; the reference backend at the smallest case as a baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from pathlib import Path

import mujoco
import numpy as np

from benchmarks._report import device_name, log

ROOT = Path(__file__).resolve().parents[1]
ASSETS = sorted((ROOT / "envs" / "assets").glob("*.xml"))
PANDA = ROOT / "envs" / "assets" / "panda_pick_cube.xml"
CHECKS = ("agreement", "zero_copy", "stream_race", "sweep")
MAX_MAE = 0.5  # uint8 levels, per camera
MIN_PSNR = 40.0  # dB, per camera
MAX_DEPTH_ERROR = 5e-3  # metres, mean where both drew
TINY_COPY_BYTES = 64


class Sizes:
    """What each check runs at: the ledger's sizes on a GPU, tiny ones for a dry run."""

    def __init__(self, dry_run: bool):
        self.image = 16 if dry_run else 64
        self.agreement_envs = 2 if dry_run else 4
        self.random_gaussians = 300 if dry_run else 4000
        self.zero_copy_envs = 2 if dry_run else 64
        self.race_envs = 2 if dry_run else 1024
        self.race_rounds = 2 if dry_run else 20
        self.sweep_envs = (2,) if dry_run else (1024, 4096)
        self.sweep_sizes = (16,) if dry_run else (64, 128, 256)
        self.loop_envs = 2 if dry_run else 64  # one-env calls timed for the loop baseline
        self.min_seconds = 0.0 if dry_run else 0.5
        self.min_calls = 1 if dry_run else 3  # timed calls per figure, after one warm-up call
        self.scenes = [p for p in ASSETS if p.stem == "cartpole"] if dry_run else ASSETS
        # Dry runs exercise the code, not the numbers: sparse scenes keep them to seconds on a CPU.
        self.scene_config = {"density": 50.0, "min_per_geom": 4, "max_per_geom": 30} if dry_run else {}


def run_checks(out_dir, dry_run: bool = False, checks=CHECKS, sizes: Sizes | None = None) -> list[dict]:
    """Runs `checks`, writes their rows to `<out_dir>/render_checks.jsonl` (appending) and returns them."""
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(CHECKS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = sizes or Sizes(dry_run)
    rows: list[dict] = []
    with _backend(dry_run) as device:
        recorder = _Recorder(out / "render_checks.jsonl", rows, dry_run)
        for name in CHECKS:
            if name in checks:
                log(f"render check: {name}")
                started = time.perf_counter()
                try:
                    globals()[f"check_{name}"](recorder, device, sizes)
                except Exception as err:  # one failing check must not hide the others' figures
                    recorder.row(name, "error", 0.0, "", config={"error": f"{type(err).__name__}: {err}"}, ok=False)
                log(f"  {name}: {time.perf_counter() - started:.1f} s")
    return rows


# ---- agreement ------------------------------------------------------------------------------------------
def check_agreement(rec, device, sizes: Sizes) -> None:
    import torch

    from serl_gs.render.config import RenderConfig
    from serl_gs.render.gsplat_backend import rasterize_gsplat
    from serl_gs.render.reference import rasterize_reference
    from serl_gs.render.stage import RenderStage

    background = torch.tensor([0.1, 0.2, 0.3], device=device)
    kw = dict(near_plane=0.01, far_plane=100.0, with_depth=True, background=background)
    for path in sizes.scenes:
        model = mujoco.MjModel.from_xml_path(str(path))
        config = RenderConfig(backend="gsplat", image_size=sizes.image, device=str(device))
        stage = RenderStage(model, config, scene=_scene(path, sizes))
        poses = [torch.as_tensor(p, device=device) for p in perturbed_poses(model, sizes.agreement_envs)]
        with torch.no_grad():
            got = stage._draw("gsplat", *poses, True)
            want = stage._draw("reference", *poses, True)
        for cam, name in enumerate(stage.camera_names):
            _agreement_rows(rec, f"{path.stem}/{name}", got, want, cam, stage.scene.num_gaussians, sizes.image)

    g = torch.Generator(device=device).manual_seed(0)
    b, n, size = sizes.agreement_envs, sizes.random_gaussians, sizes.image + 32
    means = torch.rand(b, n, 3, device=device, generator=g) * torch.tensor([2.0, 2.0, 3.0], device=device)
    means = means + torch.tensor([-1.0, -1.0, 1.0], device=device)
    quats = torch.randn(b, n, 4, device=device, generator=g)
    scales = torch.exp(torch.rand(n, 3, device=device, generator=g) * 2.5 - 5.0)
    opacities = torch.sigmoid(torch.randn(n, device=device, generator=g) * 2)
    sh = torch.randn(n, 16, 3, device=device, generator=g) * 0.4
    viewmats = torch.eye(4, device=device).expand(b, 2, 4, 4).clone()
    viewmats[:, 1, :3, 3] = torch.tensor([0.2, -0.1, 0.3], device=device)
    ks = torch.tensor([[0.8 * size, 0, size / 2], [0, 0.8 * size, size / 2], [0, 0, 1]], device=device)
    args = (means, quats, scales, opacities, sh, viewmats, ks.expand(b, 2, 3, 3), size, size)
    with torch.no_grad():
        got, want = rasterize_gsplat(*args, sh_degree=3, **kw), rasterize_reference(*args, sh_degree=3, **kw)
    for cam in range(2):
        _agreement_rows(rec, f"random_sh3/camera{cam}", got, want, cam, n, size)


def _agreement_rows(rec, scene: str, got, want, cam: int, gaussians: int, size: int) -> None:
    from serl_gs.render.stage import to_uint8

    (rgb, depth), (rgb_ref, depth_ref) = got, want
    a, b = to_uint8(rgb[:, cam]).double(), to_uint8(rgb_ref[:, cam]).double()
    mae = (a - b).abs().mean().item()
    mse = ((a - b) ** 2).mean().item()
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    drawn = (depth_ref[:, cam] > 0) & (depth[:, cam] > 0)
    depth_err = (depth[:, cam][drawn] - depth_ref[:, cam][drawn]).abs().mean().item() if bool(drawn.any()) else 0.0
    cfg = {
        "scene": scene, "image_size": size, "envs": rgb.shape[0], "gaussians": gaussians,
        "max_error_levels": (a - b).abs().max().item(), "psnr_db": None if math.isinf(psnr) else round(psnr, 2),
        "mean_depth_error_m": depth_err, "limits": {"mae": MAX_MAE, "psnr": MIN_PSNR, "depth": MAX_DEPTH_ERROR},
    }  # fmt: skip
    ok = mae <= MAX_MAE and psnr >= MIN_PSNR and depth_err <= MAX_DEPTH_ERROR
    rec.row("gsplat_vs_reference", "mae_levels_lower_is_better", mae, "levels", config=cfg, ok=ok)


def perturbed_poses(model: mujoco.MjModel, num_envs: int, seed: int = 0, scale: float = 0.1) -> list[np.ndarray]:
    """float32 [B, ...] xpos, xquat, cam_xpos, cam_xmat of `num_envs` envs at joint positions around the
    model's first keyframe (or qpos0)."""
    data = mujoco.MjData(model)
    rng = np.random.default_rng(seed)
    movable = [
        model.jnt_qposadr[j]
        for j in range(model.njnt)
        if model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    ]
    rows = []
    for _ in range(num_envs):
        if model.nkey:
            mujoco.mj_resetDataKeyframe(model, data, 0)
        else:
            mujoco.mj_resetData(model, data)
        data.qpos[movable] += scale * rng.normal(size=len(movable))
        mujoco.mj_forward(model, data)
        rows.append([data.xpos.copy(), data.xquat.copy(), data.cam_xpos.copy(), data.cam_xmat.reshape(-1, 3, 3).copy()])
    return [np.stack(c).astype(np.float32) for c in zip(*rows, strict=True)]


# ---- zero copy ------------------------------------------------------------------------------------------
def check_zero_copy(rec, device, sizes: Sizes) -> None:
    import jax

    stage = _panda_stage(device, sizes.image, sizes)
    host = perturbed_poses(mujoco.MjModel.from_xml_path(str(PANDA)), sizes.zero_copy_envs)
    jax_device = _jax_device(device)
    inputs = [jax.device_put(a, jax_device) for a in host]
    jax.block_until_ready(inputs)
    stage.render(*inputs).block_until_ready()  # warm-up: kernels loaded, caches filled
    with shared_pointers() as seen, jax.transfer_guard("disallow"):
        images = stage.render(*inputs)
        images.block_until_ready()
    in_ptrs = [a.unsafe_buffer_pointer() for a in inputs]
    shared_in = [p in seen["to_torch"] for p in in_ptrs]
    shared_out = images.unsafe_buffer_pointer() in seen["to_jax"]
    copies = host_device_copies(lambda: stage.render(*inputs).block_until_ready())
    large = [c for c in copies if c["bytes"] > TINY_COPY_BYTES]
    cfg = {
        "envs": sizes.zero_copy_envs, "image_size": sizes.image, "inputs_shared": shared_in,
        "output_shared": shared_out, "copies": len(copies), "copy_bytes": sum(c["bytes"] for c in copies),
        "large_copies": large[:5], "tiny_limit_bytes": TINY_COPY_BYTES, "profiled_cuda": device.type == "cuda",
    }  # fmt: skip
    ok = all(shared_in) and shared_out and not large
    rec.row("zero_copy", "host_device_copies_per_render_lower_is_better", len(copies), "copies", config=cfg, ok=ok)


@contextlib.contextmanager
def shared_pointers():
    """Records the buffer addresses crossing the bridge during the block: {"to_torch": [torch data_ptr of
    each converted input], "to_jax": [JAX buffer pointer of each returned array]}."""
    from serl_gs.render import bridge

    seen = {"to_torch": [], "to_jax": []}
    to_torch, to_jax = bridge.to_torch, bridge.to_jax

    def spy_to_torch(x, *a, **k):
        t = to_torch(x, *a, **k)
        seen["to_torch"].append(t.data_ptr())
        return t

    def spy_to_jax(t):
        out = to_jax(t)
        seen["to_jax"].append(out.unsafe_buffer_pointer())
        return out

    bridge.to_torch, bridge.to_jax = spy_to_torch, spy_to_jax
    try:
        yield seen
    finally:
        bridge.to_torch, bridge.to_jax = to_torch, to_jax


def host_device_copies(fn) -> list[dict]:
    """CUDA memcpys between host and device while `fn()` runs, from torch.profiler's CUPTI trace (which sees
    every library in the process): [{"name", "bytes"}]. Empty where CUDA is not profiled."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text()).get("traceEvents", [])
    return [
        {"name": e["name"], "bytes": int(e.get("args", {}).get("bytes", 0))}
        for e in events
        if e.get("cat") == "gpu_memcpy" and ("HtoD" in e.get("name", "") or "DtoH" in e.get("name", ""))
    ]


# ---- stream race ----------------------------------------------------------------------------------------
def check_stream_race(rec, device, sizes: Sizes) -> None:
    import jax
    import jax.numpy as jnp

    stage = _panda_stage(device, sizes.image, sizes)
    host = perturbed_poses(mujoco.MjModel.from_xml_path(str(PANDA)), sizes.race_envs)
    expected = np.asarray(stage.render(*host), np.int64).sum(axis=(2, 3, 4))  # [B, C] per-image sums
    jax_device = _jax_device(device)
    busy = jax.device_put(jnp.eye(512 if device.type == "cuda" else 8, dtype=jnp.float32), jax_device)
    base = [jax.device_put(a, jax_device) for a in host]

    @jax.jit
    def late_poses(busy, poses):  # a long chain first, so the poses are written well after the call returns
        m = jax.lax.fori_loop(0, 64, lambda _, m: jnp.tanh(m @ m), busy)
        zero = jnp.minimum(jnp.abs(m).sum(), 0.0) * 0.0  # always 0, but only known once the chain is done
        return [p + zero for p in poses]

    sums = jax.jit(lambda images: images.astype(jnp.int32).sum(axis=(2, 3, 4)))  # one image fits int32
    mismatches = 0
    for _ in range(sizes.race_rounds):
        images = stage.render(*late_poses(busy, base))
        mismatches += not np.array_equal(np.asarray(sums(images)), expected)  # consumed at once, on JAX's stream
    cfg = {"envs": sizes.race_envs, "image_size": sizes.image, "rounds": sizes.race_rounds,
           "jax_reports_stream": _jax_reports_stream(device)}  # fmt: skip
    rec.row("stream_race", "mismatched_rounds_lower_is_better", mismatches, "rounds", config=cfg, ok=mismatches == 0)


def _jax_reports_stream(device) -> bool | None:
    if device.type != "cuda":
        return None
    from serl_gs.render.bridge import jax_orders_external_arrays

    return jax_orders_external_arrays(device.index or 0)


# ---- sweep ----------------------------------------------------------------------------------------------
def check_sweep(rec, device, sizes: Sizes) -> None:
    import torch

    model = mujoco.MjModel.from_xml_path(str(PANDA))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    stages = {}
    for size in sizes.sweep_sizes:
        stages[size] = _panda_stage(device, size, sizes)
        for num_envs in sizes.sweep_envs:
            poses = [torch.as_tensor(p, device=device) for p in perturbed_poses(model, num_envs, scale=0.05)]
            _sweep_row(rec, stages[size], poses, sizes, sync)
            del poses
    # The reference backend on the same device, smallest case: what "auto" falls back to.
    size, num_envs = sizes.sweep_sizes[0], sizes.sweep_envs[0]
    ours, ref = stages[size], _panda_stage(device, size, sizes, backend="reference")
    poses = [torch.as_tensor(p, device=device) for p in perturbed_poses(model, num_envs, scale=0.05)]
    per_ours = _timed(lambda: ours.render(*poses), sizes, sync)
    per_ref = _timed(lambda: ref.render(*poses), sizes, sync)
    images = num_envs * len(ref.camera_names)
    cfg = {"backend": "gsplat", "image_size": size, "num_envs": num_envs, "scene": "PandaPickCube-v0"}
    rec.row("render", "images_per_s", images / per_ours, "1/s", config=cfg,
            baseline="reference_backend_same_device", baseline_value=images / per_ref)  # fmt: skip


def _sweep_row(rec, stage, poses, sizes: Sizes, sync) -> None:
    """Batched images/s against a loop of one-env calls (over the first `loop_envs` envs), peak memory."""
    import torch

    from serl_gs.render.gsplat_backend import envs_per_call, free_device_bytes

    device, cuda = poses[0].device, poses[0].device.type == "cuda"
    num_envs, size = len(poses[0]), stage.image_shape[0]
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if cuda else 0
    per_batch = _timed(lambda: stage.render(*poses), sizes, sync)
    peak = (torch.cuda.max_memory_allocated(device) - before) if cuda else None
    k = min(sizes.loop_envs, num_envs)
    per_loop_env = _timed(lambda: [stage.render(*(p[i : i + 1] for p in poses)) for i in range(k)], sizes, sync) / k
    cams = len(stage.camera_names)
    s = stage._scene_on(device)
    chunk = envs_per_call(num_envs, cameras=cams, gaussians=len(s.means), sh_coeffs=s.sh.shape[1], height=size,
                          width=size, free_bytes=free_device_bytes(device))  # fmt: skip
    cfg = {
        "backend": stage.backend, "image_size": size, "num_envs": num_envs, "cameras": list(stage.camera_names),
        "gaussians": stage.scene.num_gaussians, "scene": "PandaPickCube-v0", "peak_torch_bytes": peak,
        "envs_per_gsplat_call": chunk, "loop_envs_timed": k,
    }  # fmt: skip
    rec.row("render", "images_per_s", num_envs * cams / per_batch, "1/s", config=cfg,
            baseline="python_loop_over_envs", baseline_value=cams / per_loop_env)  # fmt: skip


def _timed(fn, sizes: Sizes, sync) -> float:
    """Seconds per call: one warm-up call, then at least `min_calls` calls and `min_seconds`."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < sizes.min_calls or time.perf_counter() - start < sizes.min_seconds:
        fn()
        sync()
        calls += 1
    return (time.perf_counter() - start) / calls


# ---- plumbing -------------------------------------------------------------------------------------------
def _panda_stage(device, size: int, sizes: Sizes, backend: str = "gsplat"):
    from serl_gs.render.config import RenderConfig
    from serl_gs.render.stage import RenderStage

    model = mujoco.MjModel.from_xml_path(str(PANDA))
    config = RenderConfig(backend=backend, image_size=size, cameras=("front", "wrist"), device=str(device))
    return RenderStage(model, config, scene=_scene(PANDA, sizes))


def _scene(path: Path, sizes: Sizes):
    """The scene generated from a task's geoms (cached in memory by `scene_for_model`: seconds to make)."""
    from serl_gs.render.config import SceneConfig
    from serl_gs.render.generate import scene_for_model

    return scene_for_model(mujoco.MjModel.from_xml_path(str(path)), SceneConfig(cache_dir=None, **sizes.scene_config))


def _jax_device(device):
    import jax

    if device.type == "cuda":
        return next(d for d in jax.devices() if d.platform == "gpu" and d.local_hardware_id == (device.index or 0))
    return jax.devices("cpu")[0]


@contextlib.contextmanager
def _backend(dry_run: bool):
    """The torch device the checks run on: CUDA for real; the CPU with the gsplat stand-in for a dry run."""
    import torch

    if not dry_run:
        if not torch.cuda.is_available():
            raise RuntimeError("the render checks need CUDA (use --dry-run on a CPU)")
        yield torch.device("cuda", torch.cuda.current_device())
        return
    from tests.gsplat_standin import install_for_process

    _ops, patch = install_for_process()
    try:
        yield torch.device("cpu")
    finally:
        patch.undo()


class _Recorder:
    def __init__(self, path: Path, rows: list, dry_run: bool):
        self.path, self.rows, self.dry_run = path, rows, dry_run
        self.device = device_name() + (" [dry run: gsplat CPU stand-in]" if dry_run else "")

    def row(self, bench, metric, value, unit, *, config, ok=None, baseline=None, baseline_value=None) -> dict:
        row = {"bench": bench, "metric": metric, "value": round(float(value), 6), "unit": unit}
        if baseline is not None:
            row.update(baseline=baseline, baseline_value=round(float(baseline_value), 4),
                       ratio=round(float(value) / float(baseline_value), 4) if baseline_value else None)  # fmt: skip
        row.update(config=config, device=self.device, quick=self.dry_run)
        if ok is not None:
            row["ok"] = bool(ok)
        line = json.dumps(row, default=float)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")
        self.rows.append(row)
        return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for render_checks.jsonl")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on a CPU, gsplat over the CPU stand-in")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma list of {', '.join(CHECKS)}")
    args = parser.parse_args(argv)
    rows = run_checks(args.out, dry_run=args.dry_run, checks=[c for c in args.checks.split(",") if c])
    failed = [r for r in rows if r.get("ok") is False]
    for r in failed:
        log(f"FAILED: {r['bench']} {r['config']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
