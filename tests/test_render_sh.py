"""SH in captures: the numpy basis is the renderer's, placing a capture turns its view-dependent colour
with it, and a degree-3 capture written as an INRIA .ply renders the colour its coefficients say."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest
import torch
from captures import ball_capture, write_tool_ply

from serl_gs.render.config import RenderConfig
from serl_gs.render.ply import read_ply
from serl_gs.render.reference import sh_basis as torch_sh_basis
from serl_gs.render.scene import quat_to_matrix
from serl_gs.render.sh import rotate_sh, sh_basis, sh_rotation
from serl_gs.render.stage import RenderStage

ONE_CAMERA = '<mujoco><worldbody><camera name="c" fovy="40"/></worldbody></mujoco>'
SIZE = 32


def random_rotation(rng) -> np.ndarray:
    return quat_to_matrix(rng.normal(size=4))


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_numpy_basis_is_the_renderers_basis():
    dirs = unit(np.random.default_rng(0).normal(size=(50, 3)))
    for degree in range(4):
        expected = torch_sh_basis(degree, torch.as_tensor(dirs)).numpy()
        np.testing.assert_allclose(sh_basis(degree, dirs), expected, rtol=1e-12, atol=1e-12)


def test_rotated_coefficients_give_the_colour_seen_along_the_turned_direction():
    rng = np.random.default_rng(1)
    sh = rng.normal(size=(5, 16, 3))
    dirs = unit(rng.normal(size=(20, 3)))
    r1, r2 = random_rotation(rng), random_rotation(rng)
    turned = rotate_sh(sh, r1)
    np.testing.assert_array_equal(turned[:, 0], sh[:, 0])  # DC: no direction
    # Seen along R d, the turned capture shows what the original showed along d.
    colour = np.einsum("mk,nkc->nmc", sh_basis(3, dirs), sh)
    np.testing.assert_allclose(np.einsum("mk,nkc->nmc", sh_basis(3, dirs @ r1.T), turned), colour, atol=1e-10)
    np.testing.assert_allclose(rotate_sh(turned, r2), rotate_sh(sh, r2 @ r1), atol=1e-10)
    np.testing.assert_allclose(sh_rotation(np.eye(3), 3), np.eye(16), atol=1e-12)
    np.testing.assert_array_equal(rotate_sh(sh[:, :1], r1), sh[:, :1])  # degree 0: nothing to turn
    with pytest.raises(ValueError, match="3x3 rotation matrix"):
        sh_rotation(2 * np.eye(3), 1)


def look_at(position, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    """MuJoCo camera pose (cam_xpos, cam_xmat): the camera looks along its -z, x right, y up."""
    z = unit(np.asarray(position, float) - target)
    x = unit(np.cross(up, z))
    return np.asarray(position, float), np.stack([x, np.cross(z, x), z], -1)


def render(scene, cam_pos, cam_mat) -> np.ndarray:
    model = mujoco.MjModel.from_xml_string(ONE_CAMERA)
    stage = RenderStage(model, RenderConfig(backend="reference", image_size=SIZE), scene)
    world = (np.zeros((1, 1, 3)), np.array([[[1.0, 0, 0, 0]]]))
    return stage.render(*world, cam_pos[None, None], cam_mat[None, None])[0, 0].astype(np.int32)


# Known view-dependent colour: red grows towards +x (band 1's x term), green follows a degree-3 lobe.
REST = np.zeros((15, 3), np.float32)
REST[2, 0] = -0.9  # coefficient of -C1 * x: +0.44 red when looking along +x
REST[14, 1] = 0.5  # coefficient of -C3_6 * x (x^2 - 3 y^2)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A degree-3 ball written and read back as an INRIA .ply (with nx ny nz)."""
    path = tmp_path_factory.mktemp("capture") / "ball.ply"
    write_tool_ply(path, ball_capture(radius=0.1, n=600, rgb=(0.4, 0.5, 0.5), degree=3, rest=REST), normals=True)
    return read_ply(path)


def test_a_degree3_capture_renders_the_colour_its_coefficients_give(capture):
    for direction in ([1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]):
        view = unit(direction)  # from the camera towards the ball
        cam_pos, cam_mat = look_at(-0.8 * view)
        centre = render(capture, cam_pos, cam_mat)[SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1]
        expected = np.clip(0.5 + sh_basis(3, view) @ capture.sh[0], 0, 1) * 255
        np.testing.assert_allclose(centre.mean(axis=(0, 1)), expected, atol=8, err_msg=f"view {direction}")


def test_a_placed_degree3_capture_renders_as_if_the_camera_had_moved_instead(capture):
    q = unit([0.8, 0.3, -0.4, 0.35])
    t, s = np.array([0.5, -0.2, 0.3]), 2.0
    placed = capture.transformed(rotation_wxyz=q, translation=t, scale=s)
    rot = quat_to_matrix(q)
    cam_pos, cam_mat = look_at(t + [1.2, -1.0, 0.8], target=t)
    image = render(placed, cam_pos, cam_mat)
    # The same view of the unplaced capture: the camera mapped back by the inverse placement.
    original = render(capture, rot.T @ (cam_pos - t) / s, rot.T @ cam_mat)
    assert image.std() > 10, "the ball is in view"
    assert np.abs(image - original).max() <= 2
    unturned = render(dataclasses.replace(placed, sh=capture.sh), cam_pos, cam_mat)
    assert np.abs(unturned - original).max() > 40, "without turning the SH the colours would be wrong"
