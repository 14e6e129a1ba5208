"""The MJX branch of the vector env with pixels, as a GPU runs it, on the CPU through MJX-Warp: the jitted
step, the render stage between two jitted functions (reference renderer here, gsplat on a GPU), autoreset and
the true final frames, with fixed shapes and no host reads inside a step.

MJX-Warp is MuJoCo C's physics, so the pixels must match the CPU MuJoCo path's frame for frame.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

import envs  # noqa: F401
from serl_gs.vec_batches import assemble_program, mjx_programs

CAMERAS = ("pixels/front", "pixels/wrist")


def _panda(physics: str, **kwargs):
    extra = {"mjx_impl": "warp"} if physics == "mjx" else {}
    return gym.make_vec(
        "serl_gs/PandaPickCube-v0",
        num_envs=2,
        physics=physics,
        obs_mode="pixels",
        render_backend="reference",
        image_size=16,
        episode_length=3,
        **extra,
        **kwargs,
    )


def _host_reads(monkeypatch) -> list:
    """Records every read of a JAX array's value into host memory (np.asarray, bool, item, ...)."""
    from jax._src.array import ArrayImpl

    reads: list = []
    original = ArrayImpl._value

    def counted(self):
        reads.append(self.shape)
        return original.fget(self)

    monkeypatch.setattr(ArrayImpl, "_value", property(counted))
    return reads


def _pixel_diff(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32))


@pytest.mark.slow
def test_panda_pixels_on_mjx_warp_match_mujoco_c_through_autoreset(monkeypatch):
    mjx, cpu = _panda("mjx"), _panda("mujoco")
    assert mjx.mjx_impl == "warp" and cpu.mjx_impl is None
    obs_m, _ = mjx.reset(seed=4)
    obs_c, _ = cpu.reset(seed=4)
    for cam in CAMERAS:
        assert isinstance(obs_m[cam], jax.Array) and obs_m[cam].shape == (2, 16, 16, 3)
        np.testing.assert_array_equal(np.asarray(obs_m[cam]), np.asarray(obs_c[cam]))
    first = {cam: np.asarray(obs_m[cam]) for cam in CAMERAS}
    push = np.tile(np.array([1.0, 1.0, -1.0, 1.0], np.float32), (2, 1))  # full scale: saturates the servos
    for i in range(4):
        if i == 1:
            reads = _host_reads(monkeypatch)
        obs_m, r_m, _, trunc_m, info_m = mjx.step(push)
        if i == 1:
            assert reads == [], f"the MJX pixel step read device arrays on the host: {reads}"
            monkeypatch.undo()
        obs_c, r_c, _, trunc_c, info_c = cpu.step(push)
        np.testing.assert_array_equal(np.asarray(trunc_m), np.asarray(trunc_c))
        np.testing.assert_allclose(np.asarray(r_m), np.asarray(r_c), atol=1e-4)
        np.testing.assert_allclose(np.asarray(obs_m["state"]), np.asarray(obs_c["state"]), atol=1e-4)
        for cam in CAMERAS:
            # float32 (MJX) and float64 (C) poses may round a few edge pixels to the next level, no more.
            for got, want in ((obs_m[cam], obs_c[cam]), (info_m["final_obs"][cam], info_c["final_obs"][cam])):
                diff = _pixel_diff(got, want)
                assert diff.max() <= 8 and diff.mean() < 0.05, (i, cam, diff.max(), diff.mean())
        if i == 2:  # episode_length=3: both envs end here and start again
            assert np.asarray(trunc_m).all() and np.asarray(info_m["_final_obs"]).all()
            for cam in CAMERAS:
                final, now = np.asarray(info_m["final_obs"][cam]), np.asarray(obs_m[cam])
                assert _pixel_diff(final, first[cam]).mean() > 2.0, "the final frame shows where the arm went"
                assert _pixel_diff(now, final).mean() > 2.0, "obs is the new episode's first frame, not the last"
    step = mjx_programs(mjx.task, "warp", 2, 2)[2]
    assert step._cache_size() == 1 and assemble_program(2)._cache_size() == 1, "compiled once for every step"
    mjx.close()
    cpu.close()


@pytest.mark.slow
def test_fewer_reset_rows_than_finished_envs_is_an_error_one_step_later():
    vec = gym.make_vec(
        "serl_gs/CartpoleBalance-v0",
        num_envs=2,
        physics="mjx",
        mjx_impl="warp",
        obs_mode="pixels",
        render_backend="reference",
        image_size=8,
        episode_length=1,
        resets_per_step=1,
    )
    vec.reset(seed=0)
    vec.step(np.zeros((2, 1), np.float32))  # both envs finish; only one new episode's first frame fits
    with pytest.raises(RuntimeError, match="more than resets_per_step=1 envs finished"):
        vec.step(np.zeros((2, 1), np.float32))
    vec.close()


def test_mjx_options_are_checked():
    with pytest.raises(ValueError, match="mjx_impl must be one of .* got 'cuda'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, physics="mjx", mjx_impl="cuda")
    with pytest.raises(ValueError, match=r"resets_per_step must be an int in \[1, num_envs=2\] or None, got 3"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, resets_per_step=3)
