"""The render stage end to end with MuJoCo poses: camera conventions, bodies carrying their Gaussians,
a body-mounted (wrist) camera, batching, array types in and out, and errors."""

from __future__ import annotations

import math
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import torch

from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.scene import GaussianScene, quat_multiply, quat_to_matrix, rgb_to_sh_dc
from serl_gs.render.stage import RenderStage, select_backend

# A hand on three slide joints carries a wrist camera looking down (-z, MuJoCo's camera convention) and a
# "finger" in its view; a fixed overhead camera sees everything. Bodies: 0 world, 1 hand, 2 box.
MJCF = """
<mujoco>
  <worldbody>
    <camera name="top" pos="0 0 2" fovy="60"/>
    <geom name="floor" type="plane" size="0.5 0.5 0.1" rgba="0.5 0.5 0.5 1"/>
    <body name="hand" pos="0 0 1">
      <joint name="hx" type="slide" axis="1 0 0"/>
      <joint name="hy" type="slide" axis="0 1 0"/>
      <joint name="hz" type="slide" axis="0 0 1"/>
      <geom name="finger" type="box" size="0.01 0.01 0.01" pos="0.05 0 -0.1" rgba="1 1 1 1"/>
      <camera name="wrist" pos="0 0 0" fovy="90"/>
    </body>
    <body name="box" pos="0 0 0.3">
      <freejoint/>
      <geom type="box" size="0.05 0.05 0.05" rgba="0.8 0.2 0.2 1"/>
    </body>
  </worldbody>
</mujoco>
"""
SIZE = 48


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_string(MJCF)


def one_gaussian(body: int, mean=(0.0, 0.0, 0.0), quat=(1.0, 0.0, 0.0, 0.0), scales=(0.05, 0.05, 0.05)):
    return GaussianScene(
        means=np.array([mean]),
        quats=np.array([quat]),
        log_scales=np.log([scales]),
        opacity_logits=np.array([4.0]),
        sh=rgb_to_sh_dc(np.ones((1, 1, 3))),
        body_ids=np.array([body]),
    )


def poses(model, qpos_rows):
    """MuJoCo `data` fields batched over envs, one env per qpos row."""
    data = mujoco.MjData(model)
    out = {"xpos": [], "xquat": [], "cam_xpos": [], "cam_xmat": []}
    for qpos in qpos_rows:
        data.qpos[:] = qpos
        mujoco.mj_forward(model, data)
        for key in out:
            out[key].append(getattr(data, key).copy())
    return [np.stack(out[k]) for k in ("xpos", "xquat", "cam_xpos", "cam_xmat")]


def qpos(model, hand=(0.0, 0.0, 0.0), box_pos=(0.0, 0.0, 0.3), box_quat=(1.0, 0.0, 0.0, 0.0)):
    q = model.qpos0.copy()
    q[:3] = hand
    q[3:6] = box_pos
    q[6:10] = box_quat
    return q


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted (x, y) of an [H, W, 3] image, in pixel coordinates (pixel centres at i + 0.5)."""
    w = image.astype(np.float64).sum(-1)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


def moments(image: np.ndarray) -> np.ndarray:
    w = image.astype(np.float64).sum(-1)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    cx, cy = centroid(image)
    return np.array([(w * (xs - cx) ** 2).sum(), (w * (ys - cy) ** 2).sum()]) / w.sum()


def project_top(point, fovy=60.0, size=SIZE, cam_height=2.0):
    """Where the fixed `top` camera (z = 2, looking down; image x = world x, up = world y) puts a point."""
    f = 0.5 * size / math.tan(math.radians(fovy) / 2)
    z = cam_height - point[2]
    return np.array([size / 2 + f * point[0] / z, size / 2 - f * point[1] / z])


def stage(model, scene, cameras=("top",), **kw):
    return RenderStage(model, RenderConfig(backend="reference", image_size=SIZE, cameras=cameras, **kw), scene)


def test_mujoco_camera_convention_right_is_x_up_is_y(model):
    # Two world Gaussians on the floor: one at +x, one at +y. MuJoCo's camera looks along its -z with +y up.
    right = one_gaussian(0, mean=(0.3, 0.0, 0.0))
    up = one_gaussian(0, mean=(0.0, 0.3, 0.0))
    args = poses(model, [qpos(model, hand=(0, 0, 5))])  # hand (and its finger) far out of view
    for scene, point in ((right, (0.3, 0, 0)), (up, (0, 0.3, 0))):
        image = stage(model, scene).render(*args)[0, 0]
        np.testing.assert_allclose(centroid(image), project_top(point), atol=0.05)


def test_moving_a_body_moves_its_gaussians_by_the_projected_delta(model):
    scene = one_gaussian(2)  # on the free box body, at its origin
    start, delta = np.array([0.1, -0.05, 0.3]), np.array([0.12, 0.07, 0.2])
    args = poses(
        model,
        [qpos(model, hand=(0, 0, 5), box_pos=start), qpos(model, hand=(0, 0, 5), box_pos=start + delta)],
    )
    images = stage(model, scene).render(*args)[:, 0]
    moved = centroid(images[1]) - centroid(images[0])
    np.testing.assert_allclose(moved, project_top(start + delta) - project_top(start), atol=0.05)


def test_rotating_a_body_rotates_its_anisotropic_splats(model):
    long_x = one_gaussian(2, scales=(0.12, 0.015, 0.015))  # a needle along the box's x axis
    turn = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))  # 90 degrees about z
    args = poses(model, [qpos(model, hand=(0, 0, 5)), qpos(model, hand=(0, 0, 5), box_quat=turn)])
    still, turned = stage(model, long_x).render(*args)[:, 0]
    var_still, var_turned = moments(still), moments(turned)
    assert var_still[0] > 10 * var_still[1] and var_turned[1] > 10 * var_turned[0]
    # The same as rotating the Gaussian itself, in the scene, with the body unrotated.
    pre_rotated = one_gaussian(
        2, quat=quat_multiply(np.array(turn), np.array([1.0, 0, 0, 0])), scales=(0.12, 0.015, 0.015)
    )
    same = stage(model, pre_rotated).render(*args)[0, 0]
    assert np.abs(same.astype(int) - turned.astype(int)).max() <= 1


def test_wrist_camera_follows_the_hand(model):
    # Gaussians on the hand keep their place in the wrist image; world Gaussians slide the other way.
    on_hand = one_gaussian(1, mean=(0.05, 0.0, -0.1), scales=(0.01, 0.01, 0.01))
    on_floor = one_gaussian(0, mean=(0.0, 0.0, 0.0), scales=(0.05, 0.05, 0.05))
    args = poses(model, [qpos(model, hand=(0, 0, 0)), qpos(model, hand=(0.1, 0.05, 0))])
    hand_images = stage(model, on_hand, cameras=("wrist", "top")).render(*args)
    assert np.abs(hand_images[0, 0].astype(int) - hand_images[1, 0]).max() <= 1  # wrist view: unchanged
    assert np.abs(centroid(hand_images[1, 1]) - centroid(hand_images[0, 1])).max() > 1  # top view: it moved
    floor_images = stage(model, on_floor, cameras=("wrist",)).render(*args)[:, 0]
    f = 0.5 * SIZE / math.tan(math.radians(90) / 2)
    expected = np.array([-0.1, 0.05]) * f / 1.0  # hand 1 m above the floor; image y grows downwards
    np.testing.assert_allclose(centroid(floor_images[1]) - centroid(floor_images[0]), expected, atol=0.05)


def test_batched_stage_equals_each_env_alone_with_generated_scene(model):
    st = RenderStage(
        model,
        RenderConfig(backend="reference", image_size=32, cameras=("top", "wrist")),
        scene_config=SceneConfig(cache_dir=None, density=400.0),
    )
    rows = [qpos(model, hand=(0.1 * i, 0, -0.2 * i), box_pos=(0.05 * i, 0, 0.3)) for i in range(3)]
    batched = st.render(*poses(model, rows))
    assert batched.shape == (3, 2, 32, 32, 3) and batched.dtype == np.uint8
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(batched[i], st.render(*poses(model, [row]))[0])
    assert len({batched[i].tobytes() for i in range(3)}) == 3  # the envs really differ


def test_array_types_in_are_array_types_out(model):
    import jax
    import jax.numpy as jnp

    st = stage(model, one_gaussian(2, scales=(0.1, 0.1, 0.1)), cameras=("top", "wrist"))
    args = poses(model, [qpos(model), qpos(model, box_pos=(0.1, 0, 0.3))])
    from_numpy = st.render(*args)
    from_jax = st.render(*[jnp.asarray(a, jnp.float32) for a in args])
    from_torch = st.render(*[torch.as_tensor(a) for a in args])
    assert isinstance(from_numpy, np.ndarray) and from_numpy.shape == (2, 2, SIZE, SIZE, 3)
    assert isinstance(from_jax, jax.Array) and from_jax.dtype == jnp.uint8
    assert isinstance(from_torch, torch.Tensor)
    np.testing.assert_array_equal(np.asarray(from_jax), from_numpy)
    np.testing.assert_array_equal(from_torch.numpy(), from_numpy)
    images, depth = st.render_with_depth(*args)
    np.testing.assert_array_equal(images, from_numpy)
    assert depth.dtype == np.float32 and depth.shape == (2, 2, SIZE, SIZE)
    centre = depth[0, 0, SIZE // 2, SIZE // 2]
    assert centre == pytest.approx(2.0 - 0.3, abs=1e-3)  # camera z of the box origin seen from the top
    assert from_numpy.max() > 200


def test_bad_inputs_raise_value_errors_naming_them(model):
    st = stage(model, one_gaussian(0))
    xpos, xquat, cam_xpos, cam_xmat = poses(model, [qpos(model)])
    with pytest.raises(ValueError, match=r"body_xpos must have shape \[B, 3, 3\], got \(3, 3\)"):
        st.render(xpos[0], xquat, cam_xpos, cam_xmat)
    with pytest.raises(ValueError, match=r"cam_xpos must have shape \[B, 2, 3\]"):
        st.render(xpos, xquat, cam_xpos[:, :1], cam_xmat)
    with pytest.raises(ValueError, match=r"unknown camera 'side'; the model's cameras are \['top', 'wrist'\]"):
        stage(model, one_gaussian(0), cameras=("side",))
    with pytest.raises(ValueError, match="body 7"):
        stage(model, one_gaussian(7))
    with pytest.raises(ValueError, match="backend must be"):
        RenderConfig(backend="opengl")
    with pytest.raises(ValueError, match="image_size"):
        RenderConfig(image_size=(0, 64))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_auto_backend_falls_back_to_reference_and_says_why():
    name, why = select_backend("auto")
    assert name == "reference" and "gsplat unavailable" in why and "CUDA" in why
    with pytest.raises(RuntimeError, match="gsplat.*unavailable"):
        select_backend("gsplat")


@pytest.mark.slow  # a fresh interpreter importing torch: ~5 s
def test_cpu_path_never_imports_gsplat_and_the_package_import_is_light():
    code = (
        "import sys, serl_gs.render as r\n"
        "assert 'torch' not in sys.modules, 'importing serl_gs.render pulled in torch'\n"
        "import mujoco, numpy as np\n"
        'm = mujoco.MjModel.from_xml_string(\'<mujoco><worldbody><camera name="c" pos="0 0 1"/>'
        '<geom type="sphere" size="0.1"/></worldbody></mujoco>\')\n'
        "d = mujoco.MjData(m); mujoco.mj_forward(m, d)\n"
        "config = r.RenderConfig(backend='auto', image_size=16)\n"
        "st = r.RenderStage(m, config, scene_config=r.SceneConfig(cache_dir=None))\n"
        "img = st.render(d.xpos[None], d.xquat[None], d.cam_xpos[None], d.cam_xmat[None])\n"
        "assert img.shape == (1, 1, 16, 16, 3) and img.max() > 0\n"
        "import torch\n"
        "assert torch.cuda.is_available() or 'gsplat' not in sys.modules, 'gsplat imported on a CPU path'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_quaternion_helpers_agree_with_mujoco():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=4), rng.normal(size=4)
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, a)
        np.testing.assert_allclose(quat_to_matrix(a), mat.reshape(3, 3), atol=1e-12)
        res = np.zeros(4)
        mujoco.mju_mulQuat(res, a, b)
        np.testing.assert_allclose(quat_multiply(a, b), res, atol=1e-12)


def test_torch_posing_rotates_like_rotation_matrices():
    from serl_gs.render.geometry import pose_gaussians, quat_to_rotmat

    g = torch.Generator().manual_seed(0)
    means, quats = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    body_ids = torch.tensor([0, 1, 1, 2, 0])
    xpos, xquat = torch.randn(2, 3, 3, generator=g), torch.randn(2, 3, 4, generator=g)
    means_w, quats_w = pose_gaussians(means, quats, body_ids, xpos, xquat)
    rot = quat_to_rotmat(xquat)[:, body_ids]  # [2, 5, 3, 3]
    torch.testing.assert_close(means_w, (rot @ means[None, :, :, None])[..., 0] + xpos[:, body_ids])
    torch.testing.assert_close(quat_to_rotmat(quats_w), rot @ quat_to_rotmat(quats)[None])


def test_poses_from_qpos_match_mj_forward(model):
    from serl_gs.render.poses import poses_from_qpos

    rows = [qpos(model, hand=(0.1, -0.2, 0.3), box_pos=(0.2, 0.1, 0.5), box_quat=(0.8, 0.6, 0, 0)), qpos(model)]
    for got, want in zip(poses_from_qpos(model, np.stack(rows)), poses(model, rows), strict=True):
        np.testing.assert_allclose(got, want.reshape(got.shape), atol=1e-12)
    with pytest.raises(ValueError, match=r"qpos must have shape \[B, 10\]"):
        poses_from_qpos(model, np.zeros(10))


def test_render_size_rasterizes_larger_and_area_downsamples_to_the_image_size(model):
    # Squint's small images: rasterized at 4x the side, each pixel the mean of its 4x4 block (in float, then
    # rounded), so it differs from block means of the large uint8 image by rounding alone.
    scene = one_gaussian(2)
    args = poses(model, [qpos(model, hand=(0, 0, 5), box_pos=(0.1, -0.05, 0.3))])
    small = stage(model, scene, render_size=4 * SIZE).render(*args)[0, 0]
    large = RenderStage(model, RenderConfig(backend="reference", image_size=4 * SIZE, cameras=("top",)), scene)
    big = large.render(*args)[0, 0].astype(np.float64)
    blocks = big.reshape(SIZE, 4, SIZE, 4, 3).mean(axis=(1, 3))
    assert small.shape == (SIZE, SIZE, 3) and small.dtype == np.uint8 and small.max() > 50
    assert np.abs(small.astype(np.float64) - blocks).max() <= 1.0
    with pytest.raises(ValueError, match="render_size must be a positive multiple"):
        RenderConfig(image_size=SIZE, render_size=SIZE + 1)
