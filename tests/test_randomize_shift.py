"""Held-out shifts for evaluation (serl_gs.randomize.ShiftConfig, `--shift` on run_eval.sh): fixed changes of the
frames outside every training range of the `strong` preset, the same in every env, applied by the render stage
like a randomization draw."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401
from serl_gs.nodes.evaluation import EvalConfig
from serl_gs.randomize import PALETTE, PRESETS, SHIFTS, ShiftConfig, draw_visual, resolve_shift, shift_draw, then_shift

KW = dict(num_envs=2, physics="mujoco", obs_mode="pixels", render_backend="reference", image_size=16,
          array_backend="numpy")  # fmt: skip


def _angle_deg(r: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def test_each_shift_lies_outside_the_strong_ranges_and_is_the_same_in_every_env():
    strong, luma = PRESETS["strong"], np.full(4, 0.5, np.float32)
    sizeless = dataclasses.replace(strong, object_size=0.0)  # a shift moves no object (its object_scale is None)
    strongest = draw_visual(sizeless, jnp.zeros((1, 2), jnp.uint32), jnp.zeros(1, jnp.int32), 1, luma)  # for shapes
    for name, shift in SHIFTS.items():
        if shift is None:
            continue
        d = jax.tree.map(np.asarray, shift_draw(shift, 3, 1, luma))
        assert jax.tree.structure(d) == jax.tree.structure(strongest)
        for field, x in vars(d).items():
            if x is None:
                continue
            assert all(np.array_equal(x[0], x[i]) for i in range(3)), f"{name}.{field}: the same in every env"
        if name == "camera":
            assert np.abs(d.cam_offset).max() > 5 * strong.camera_position
            assert _angle_deg(d.cam_rotation[0, 0]) > 1.5 * strong.camera_rotation_deg
        if name == "lighting":
            gain = np.linalg.det(d.colour_matrix[0, 0]) ** (1 / 3)  # a rotation times a gain
            assert gain < 1 - strong.brightness and abs(shift.hue_deg) > 2 * strong.hue_deg
            np.testing.assert_allclose(gain, shift.brightness, rtol=1e-5)
        if name == "background":
            assert min(np.abs(np.subtract(shift.background, p)).max() for p in PALETTE) > 0.15
            grey = d.colour_matrix[0, 0] @ np.full(3, 0.5, np.float32)  # a background Gaussian at the group's luma
            np.testing.assert_allclose(grey, shift.background, rtol=1e-5)
            np.testing.assert_allclose(d.colour_matrix[0, 2], np.eye(3), atol=1e-6)  # the robot keeps its colours


def test_then_shift_composes_colours_and_cameras():
    luma = np.full(4, 0.5, np.float32)
    draw = draw_visual(PRESETS["strong"], jnp.ones((2, 2), jnp.uint32), jnp.zeros(2, jnp.int32), 1, luma)
    shift = shift_draw(SHIFTS["lighting"], 2, 1, luma)
    both = then_shift(draw, shift)
    rgb = np.asarray([0.2, 0.5, 0.7], np.float32)
    once = np.einsum("kgij,j->kgi", np.asarray(draw.colour_matrix), rgb) + np.asarray(draw.colour_offset)
    want = np.einsum("kgij,kgj->kgi", np.asarray(shift.colour_matrix), once) + np.asarray(shift.colour_offset)
    got = np.einsum("kgij,j->kgi", np.asarray(both.colour_matrix), rgb) + np.asarray(both.colour_offset)
    np.testing.assert_allclose(got, want, atol=1e-6)
    camera = then_shift(draw, shift_draw(SHIFTS["camera"], 2, 1, luma))
    np.testing.assert_allclose(camera.cam_offset, np.asarray(draw.cam_offset) + [0.25, 0.0, 0.15], atol=1e-6)
    np.testing.assert_array_equal(camera.focal_scale, draw.focal_scale)


def test_a_camera_shift_renders_as_the_moved_camera_and_none_changes_no_bit():
    plain = gym.make_vec("serl_gs/CartpoleBalance-v0", **KW)
    unshifted = gym.make_vec("serl_gs/CartpoleBalance-v0", shift="none", **KW)
    offset = (0.25, 0.0, 0.15)
    moved = gym.make_vec("serl_gs/CartpoleBalance-v0", shift=ShiftConfig(camera_position=offset), **KW)
    frames = [env.reset(seed=3)[0]["pixels/fixed"] for env in (plain, unshifted, moved)]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])
    xpos, xquat, cam_xpos, cam_xmat = plain.body_poses()
    by_hand = plain.renderer.render(xpos, xquat, np.asarray(cam_xpos) + np.asarray(offset, np.float32), cam_xmat)[:, 0]
    assert np.abs(np.asarray(by_hand, np.int16) - frames[2]).max() <= 1  # float32 sums in another order
    for env in (plain, unshifted, moved):
        env.close()


def test_bad_shifts_name_the_bad_value():
    assert resolve_shift("none") is None and resolve_shift(None) is None
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        resolve_shift("fog")
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        EvalConfig(checkpoint="x", shift="fog")
    with pytest.raises(ValueError, match="brightness must be a gain in \\(0, 4\\], got 0"):
        ShiftConfig(brightness=0)
    with pytest.raises(ValueError, match="background must be RGB in \\[0, 1\\]"):
        ShiftConfig(background=(2.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="needs obs_mode='pixels'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, shift="camera")
