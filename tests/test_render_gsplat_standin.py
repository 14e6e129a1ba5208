"""gsplat's real Python (`gsplat.rasterization`, 1.5.3) on a CPU, over the stand-in for its compiled ops
(tests/gsplat_standin.py): the gsplat backend against the reference renderer, the stage's backend choice,
and chunking within CUDA's launch limits. The stand-in itself is checked against gsplat's own pure-torch
implementations first, so "agrees with the reference" means what it would on a GPU, up to float rounding."""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from serl_gs.render import gsplat_backend
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.reference import rasterize_reference
from serl_gs.render.stage import RenderStage

pytest.importorskip("gsplat")

import gsplat_standin  # noqa: E402  (tests/ is on sys.path under pytest)

PANDA = Path(__file__).resolve().parents[1] / "envs" / "assets" / "panda_pick_cube.xml"
# Same maths in both, different order of float operations: colours agree to float rounding.
RGB_ATOL = 2e-5  # per camera, max over pixels and channels, colour units (1 level = 1/255 = 3.9e-3)
DEPTH_ATOL = 1e-4  # metres, where both drew something


@pytest.fixture
def standin(monkeypatch):
    return gsplat_standin.install(monkeypatch)


def random_scene(b=2, c=2, n=300, size=24, sh_coeffs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(b, n, 3, generator=g) * 2 - 1 + torch.tensor([0.0, 0.0, 3.0])
    quats = torch.randn(b, n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) - 4)
    opacities = torch.rand(n, generator=g)
    sh = torch.randn(n, sh_coeffs, 3, generator=g) * 0.5
    viewmats = torch.eye(4).expand(b, c, 4, 4).clone()
    viewmats[:, 1:, 0, 3] = 0.2  # the other cameras sit beside the first
    ks = torch.tensor([[20.0, 0, size / 2], [0, 20.0, size / 2], [0, 0, 1]]).expand(b, c, 3, 3)
    return (means, quats, scales, opacities, sh, viewmats, ks, size, size)


# ---- the stand-in is gsplat's maths ---------------------------------------------------------------------
def test_standin_projection_and_sh_match_gsplats_own_torch_implementation(standin):
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

    means, quats, scales, _, sh, viewmats, ks, w, h = random_scene(b=2, c=2, n=200, sh_coeffs=16)
    ks = ks.contiguous()
    scales_b = scales.expand(2, -1, -1).contiguous()
    out = standin.projection_ewa_3dgs_packed_fwd(
        means, None, quats, scales_b, None, viewmats, ks, w, h, 0.3, 0.01, 100.0, 0.0, False,
        gsplat_standin.CameraModelType.PINHOLE,
    )  # fmt: skip
    _, bi, ci, ni, radii, means2d, depths, conics, _ = out
    covars, _ = _quat_scale_to_covar_preci(quats, scales_b, True, False, triu=False)
    projected = _fully_fused_projection(means, covars, viewmats, ks, w, h, 0.3, 0.01, 100.0)
    radii_t, means2d_t, depths_t, conics_t, _ = projected
    valid_t = (radii_t > 0).all(-1)
    assert valid_t.sum() == len(bi) > 100
    assert torch.equal(valid_t.nonzero(), torch.stack([bi, ci, ni], -1))  # packed order: env, camera, Gaussian
    torch.testing.assert_close(radii, radii_t[bi, ci, ni])
    torch.testing.assert_close(means2d, means2d_t[bi, ci, ni])
    torch.testing.assert_close(depths, depths_t[bi, ci, ni])
    torch.testing.assert_close(conics, conics_t[bi, ci, ni], rtol=1e-4, atol=1e-6)

    dirs = torch.randn(50, 3)
    coeffs = torch.randn(50, 16, 3)
    for degree in range(4):
        got = standin.spherical_harmonics_fwd(degree, dirs, coeffs, None)
        torch.testing.assert_close(got, _spherical_harmonics(degree, dirs, coeffs), rtol=1e-5, atol=1e-5)


def test_standin_tile_intersections_match_gsplats_own_torch_implementation(standin):
    from gsplat.cuda._torch_impl import _isect_offset_encode, _isect_tiles

    g = torch.Generator().manual_seed(1)
    means2d = torch.rand(2, 40, 2, generator=g) * 60 - 6
    radii = torch.randint(0, 12, (2, 40, 2), generator=g, dtype=torch.int32)
    depths = torch.rand(2, 40, generator=g) + 0.5
    ours = standin.intersect_tile(means2d, radii, depths, None, None, 2, 16, 4, 3, True, False)
    tiles_ours, ids_ours, flat_ours = ours
    tiles_t, ids_t, flat_t = _isect_tiles(means2d, radii, depths, 16, 4, 3)
    assert torch.equal(tiles_ours, tiles_t) and torch.equal(ids_ours, ids_t) and torch.equal(flat_ours, flat_t)
    assert torch.equal(standin.intersect_offset(ids_ours, 2, 4, 3), _isect_offset_encode(ids_t, 2, 4, 3))


# ---- the gsplat backend against the reference ---------------------------------------------------------
def test_packed_backgrounds_trip_gsplat_1_5_3s_assertion(standin):
    """gsplat issues #764/#826: with packed=True, rasterize_to_pixels checks backgrounds against the packed
    [nnz] layout and rejects every [..., C, 3] background. The backend composites the background itself."""
    from gsplat import rasterization

    means, quats, scales, opacities, sh, viewmats, ks, w, h = random_scene()
    b, n = means.shape[:2]
    with pytest.raises(AssertionError):
        rasterization(
            means, quats, scales.expand(b, n, 3), opacities.expand(b, n), sh.expand(b, n, -1, 3), viewmats, ks, w, h,
            sh_degree=1, packed=True, backgrounds=torch.full((b, 2, 3), 0.5),
        )  # fmt: skip


@pytest.mark.parametrize("with_depth", [False, True], ids=["rgb", "rgb+depth"])
def test_gsplat_backend_matches_reference_per_camera(standin, with_depth):
    args = random_scene(sh_coeffs=16)
    kw = dict(sh_degree=3, near_plane=0.01, far_plane=100.0, background=torch.tensor([0.1, 0.5, 0.9]))
    rgb, depth = gsplat_backend.rasterize_gsplat(*args, with_depth=with_depth, **kw)
    ref_rgb, ref_depth = rasterize_reference(*args, with_depth=with_depth, **kw)
    assert rgb.shape == ref_rgb.shape == (2, 2, 24, 24, 3)
    for env in range(2):
        for cam in range(2):
            err = (rgb[env, cam] - ref_rgb[env, cam]).abs().max().item()
            assert err <= RGB_ATOL, f"env {env} camera {cam}: max colour difference {err}"
    assert ref_rgb.amax() > 0.5 and (ref_rgb[..., 2] > 0.8).any()  # something drawn, and background showing
    if with_depth:
        drawn = ref_depth > 0
        assert drawn.float().mean() > 0.1
        torch.testing.assert_close(depth[drawn], ref_depth[drawn], rtol=0, atol=DEPTH_ATOL)
    else:
        assert depth is None


def test_chunks_of_envs_stay_within_cudas_grid_limit(standin, monkeypatch):
    # Launch limit scaled down (both sides) so a handful of envs crosses it: 7 envs x 2 cameras, at most 5
    # images per projection launch -> chunks of 2 envs.
    monkeypatch.setattr(gsplat_standin, "MAX_GRID_Y", 5)
    monkeypatch.setattr(gsplat_backend, "GRID_Y_LIMIT", 5)
    args = random_scene(b=7, n=120, size=16)
    kw = dict(sh_degree=1, near_plane=0.01, far_plane=100.0, background=torch.tensor([0.2, 0.2, 0.2]))
    rgb, _ = gsplat_backend.rasterize_gsplat(*args, **kw)
    ref_rgb, _ = rasterize_reference(*args, **kw)
    launches = [sizes for op, sizes in standin.calls if op == "projection_ewa_3dgs_packed_fwd"]
    assert [s["B"] for s in launches] == [2, 2, 2, 1]
    assert (rgb - ref_rgb).abs().max().item() <= RGB_ATOL
    standin.calls.clear()
    gsplat_backend.rasterize_gsplat(*args, max_envs_per_call=3, **kw)  # a smaller cap given by the caller wins
    assert [s["B"] for op, s in standin.calls if op == "projection_ewa_3dgs_packed_fwd"] == [2, 2, 2, 1]


def test_envs_per_call_bounds_launch_size_and_memory():
    panda = dict(cameras=2, gaussians=17_929, sh_coeffs=1, height=64, width=64)
    assert gsplat_backend.envs_per_call(40_000, free_bytes=None, **panda) == 65_535 // 2  # 32,767 envs x 2 cameras
    per_env = gsplat_backend.bytes_per_env(**panda)
    assert 2e6 < per_env < 2e7  # ~100 GB for 16k Panda envs at 64^2, the estimate, within its order
    fits = gsplat_backend.envs_per_call(16_384, free_bytes=40e9, **panda)
    assert fits * per_env <= 0.5 * 40e9 < (fits + 1) * per_env  # half of what is free, the rest is margin
    assert gsplat_backend.envs_per_call(3, free_bytes=40e9, **panda) == 3
    assert gsplat_backend.envs_per_call(16_384, free_bytes=1.0, **panda) == 1
    with pytest.raises(ValueError, match="70000 cameras"):
        gsplat_backend.envs_per_call(1, free_bytes=None, **{**panda, "cameras": 70_000})


# ---- the stage: backend choice by its real call, and agreement on a task scene ---------------------------
SPHERE = '<mujoco><worldbody><camera name="c" pos="0 0 1"/><geom type="sphere" size="0.1"/></worldbody></mujoco>'


def sphere_stage(backend: str, **kw) -> RenderStage:
    model = mujoco.MjModel.from_xml_string(SPHERE)
    config = RenderConfig(backend=backend, image_size=16, device="cpu", **kw)
    return RenderStage(model, config, scene_config=SceneConfig(cache_dir=None, density=300.0))


def test_auto_picks_gsplat_when_its_ops_are_loaded_and_the_stages_call_works(standin):
    stage = sphere_stage("auto")
    assert stage.backend == "gsplat", stage.backend_reason
    # The probe was the stage's own call: its cameras, image size, background and depth channel.
    raster = [s for op, s in standin.calls if op == "rasterize_to_pixels_3dgs_fwd"]
    assert {(s["I"], s["H"], s["W"], s["ch"]) for s in raster} == {(1, 16, 16, 3), (1, 16, 16, 4)}


def _stage_warnings(caplog) -> list[str]:
    """What the render stage logged as warnings (its loud "falls back to the reference" line)."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "serl_gs.render.stage"]


def test_auto_warns_loudly_and_falls_back_when_gsplat_is_there_but_fails(standin, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(standin, "rasterize_to_pixels_3dgs_fwd", broken)
    stage = sphere_stage("auto")
    assert re.search("gsplat.*unusable.*no kernel image", " ".join(_stage_warnings(caplog)))
    assert stage.backend == "reference" and "no kernel image" in stage.backend_reason
    with pytest.raises(RuntimeError, match="gsplat.*unusable"):
        sphere_stage("gsplat")


def test_auto_refuses_gsplat_whose_images_differ_from_the_reference(standin, monkeypatch, caplog):
    real = standin.rasterize_to_pixels_3dgs_fwd

    def garbage(*args, **kwargs):  # what a kernel launched out of its limits leaves behind
        colors, alphas, last = real(*args, **kwargs)
        return colors + 0.3, alphas, last

    monkeypatch.setattr(standin, "rasterize_to_pixels_3dgs_fwd", garbage)
    stage = sphere_stage("auto")
    assert "differ from the reference" in " ".join(_stage_warnings(caplog))
    assert stage.backend == "reference"


def test_auto_stays_quiet_on_a_cpu_without_gsplats_ops():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stage = sphere_stage("auto")
    assert stage.backend == "reference" and "CUDA" in stage.backend_reason


@pytest.mark.slow  # the Panda scene (18k Gaussians) through both renderers: ~10 s on 2 cores
def test_gsplat_stage_matches_reference_stage_per_camera_on_panda(standin):
    from benchmarks.bench_render import batched_poses

    model = mujoco.MjModel.from_xml_path(str(PANDA))
    scene_config = SceneConfig(cache_dir=None)
    configs = {name: RenderConfig(backend=name, image_size=32, device="cpu") for name in ("gsplat", "reference")}
    stages = {backend: RenderStage(model, config, scene_config=scene_config) for backend, config in configs.items()}
    assert stages["gsplat"].backend == "gsplat"
    poses = batched_poses(model, 2)
    got = stages["gsplat"].render(*poses).astype(int)
    want = stages["reference"].render(*poses).astype(int)
    for cam, name in enumerate(stages["gsplat"].camera_names):
        diff = np.abs(got[:, cam] - want[:, cam])
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, f"camera {name}: {diff.max()} levels"
        assert want[:, cam].std() > 10  # a real image, not a flat one
    assert math.prod(got.shape) == 2 * 2 * 32 * 32 * 3
