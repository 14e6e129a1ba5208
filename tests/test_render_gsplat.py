"""GPU checks (skipped without CUDA): gsplat against the reference oracle, and the zero-copy JAX bridge.

Figures (mean absolute error in uint8 levels, PSNR in dB) are printed with `-s` so a GPU session can record
them in benchmarks/results/README.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.geometry import pose_gaussians, viewmats_from_mujoco
from serl_gs.render.reference import rasterize_reference
from serl_gs.render.stage import RenderStage, to_uint8

pytestmark = pytest.mark.gpu

SPHERE = '<mujoco><worldbody><camera name="c" pos="0 0 1"/><geom type="sphere" size="0.1"/></worldbody></mujoco>'
TASK_ASSETS = sorted((Path(__file__).resolve().parents[1] / "envs" / "assets").glob("*.xml"))
MAX_MAE = 0.5  # uint8 levels, averaged over every pixel and channel
MIN_PSNR = 40.0  # dB on uint8 images


def compare(images_a: torch.Tensor, images_b: torch.Tensor) -> tuple[float, float]:
    a, b = to_uint8(images_a).double(), to_uint8(images_b).double()
    mae = (a - b).abs().mean().item()
    mse = ((a - b) ** 2).mean().item()
    return mae, (math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))


def both_backends(means, quats, scales, opacities, sh, viewmats, ks, size, sh_degree):
    from serl_gs.render.gsplat_backend import rasterize_gsplat

    kw = dict(sh_degree=sh_degree, near_plane=0.01, far_plane=100.0, with_depth=True)
    args = (means, quats, scales, opacities, sh, viewmats, ks, size, size)
    return rasterize_gsplat(*args, **kw), rasterize_reference(*args, **kw)


@pytest.mark.parametrize("path", TASK_ASSETS, ids=[p.stem for p in TASK_ASSETS])
def test_gsplat_matches_reference_on_task_scenes(path):
    model = mujoco.MjModel.from_xml_path(str(path))
    stage = RenderStage(model, RenderConfig(backend="gsplat", image_size=64), scene_config=SceneConfig(cache_dir=None))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    hinge_or_slide = [
        model.jnt_qposadr[j]
        for j in range(model.njnt)
        if model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    ]
    rows = []
    for _ in range(4):  # four envs at perturbed poses
        data.qpos[:] = model.qpos0
        data.qpos[hinge_or_slide] += 0.1 * rng.normal(size=len(hinge_or_slide))
        mujoco.mj_forward(model, data)
        rows.append([data.xpos.copy(), data.xquat.copy(), data.cam_xpos.copy(), data.cam_xmat.copy()])
    xpos, xquat, cpos, cmat = (
        torch.as_tensor(np.stack(c), dtype=torch.float32, device="cuda") for c in zip(*rows, strict=True)
    )
    s = stage._scene_on(xpos.device)
    means, quats = pose_gaussians(s.means, s.quats, s.body_ids, xpos, xquat)
    viewmats = viewmats_from_mujoco(cpos[:, s.camera_ids], cmat.view(4, -1, 3, 3)[:, s.camera_ids])
    ks = s.ks.expand(4, -1, -1, -1)
    (rgb_g, depth_g), (rgb_r, depth_r) = both_backends(
        means, quats, s.scales, s.opacities, s.sh, viewmats, ks, 64, stage.scene.sh_degree
    )
    mae, psnr = compare(rgb_g, rgb_r)
    print(f"\n{path.stem}: gsplat vs reference at 64x64, 4 envs x {len(stage.camera_names)} cameras: "
          f"MAE {mae:.4f} levels, PSNR {psnr:.2f} dB")  # fmt: skip
    assert mae <= MAX_MAE and psnr >= MIN_PSNR
    drawn = (depth_r > 0) & (depth_g > 0)
    assert (depth_g[drawn] - depth_r[drawn]).abs().mean().item() < 5e-3  # metres


def test_gsplat_matches_reference_on_a_random_scene_with_sh_degree_3():
    g = torch.Generator(device="cuda").manual_seed(0)
    b, n, size = 3, 4000, 96
    means = torch.rand(b, n, 3, device="cuda", generator=g) * torch.tensor([2.0, 2.0, 3.0], device="cuda")
    means = means + torch.tensor([-1.0, -1.0, 1.0], device="cuda")
    quats = torch.randn(b, n, 4, device="cuda", generator=g)
    scales = torch.exp(torch.rand(n, 3, device="cuda", generator=g) * 2.5 - 5.0)
    opacities = torch.sigmoid(torch.randn(n, device="cuda", generator=g) * 2)
    sh = torch.randn(n, 16, 3, device="cuda", generator=g) * 0.4
    viewmats = torch.eye(4, device="cuda").expand(b, 2, 4, 4).clone()
    viewmats[:, 1, :3, 3] = torch.tensor([0.2, -0.1, 0.3], device="cuda")
    f = 80.0
    ks = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], device="cuda").expand(b, 2, 3, 3)
    (rgb_g, _), (rgb_r, _) = both_backends(means, quats, scales, opacities, sh, viewmats, ks, size, 3)
    mae, psnr = compare(rgb_g, rgb_r)
    print(f"\nrandom scene ({n} Gaussians, SH 3): gsplat vs reference: MAE {mae:.4f} levels, PSNR {psnr:.2f} dB")
    assert mae <= MAX_MAE and psnr >= MIN_PSNR


def test_auto_picks_gsplat_when_cuda_and_gsplat_work():
    model = mujoco.MjModel.from_xml_string(SPHERE)
    stage = RenderStage(model, RenderConfig(backend="auto", image_size=16), scene_config=SceneConfig(cache_dir=None))
    assert stage.backend == "gsplat", stage.backend_reason


def test_render_stage_zero_copy_pointers_and_copy_counts():
    """JAX GPU arrays in, JAX GPU images out: the buffers are shared (addresses), no JAX transfer happens, and
    the only CUDA host<->device copies during a render are scalars (gsplat reads its packed counts)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from benchmarks.gpu_render_checks import TINY_COPY_BYTES, host_device_copies, shared_pointers

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        pytest.skip("JAX has no GPU here")
    path = next((p for p in TASK_ASSETS if p.stem == "panda_pick_cube"), None)
    model = mujoco.MjModel.from_xml_path(str(path)) if path else mujoco.MjModel.from_xml_string(SPHERE)
    stage = RenderStage(model, RenderConfig(backend="auto", image_size=64), scene_config=SceneConfig(cache_dir=None))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    host = [np.repeat(a[None], 8, 0).astype(np.float32) for a in (data.xpos, data.xquat, data.cam_xpos, data.cam_xmat)]
    on_gpu = [jax.device_put(a, gpus[0]) for a in host]
    jax.block_until_ready(on_gpu)
    stage.render(*on_gpu).block_until_ready()  # warm-up
    with shared_pointers() as seen, jax.transfer_guard("disallow"):
        images = stage.render(*on_gpu)
        images.block_until_ready()
    assert [a.unsafe_buffer_pointer() for a in on_gpu] == seen["to_torch"]
    assert seen["to_jax"] == [images.unsafe_buffer_pointer()]
    copies = host_device_copies(lambda: stage.render(*on_gpu).block_until_ready())
    print(f"\nhost<->device copies per render: {len(copies)}, {sum(c['bytes'] for c in copies)} bytes")
    assert all(c["bytes"] <= TINY_COPY_BYTES for c in copies), copies
    assert isinstance(images, jax.Array) and images.dtype == jnp.uint8
    assert images.devices() == {gpus[0]} and images.shape == (8, len(stage.camera_names), 64, 64, 3)
    np.testing.assert_array_equal(np.asarray(images), stage.render(*host))  # same pixels as the numpy path
