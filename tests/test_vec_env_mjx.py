"""The MJX branch of the vector env with pixels, as a GPU runs it, on the CPU through MJX-Warp: the jitted
step, the render stage between two jitted functions (reference renderer here, gsplat on a GPU), autoreset and
the true final frames, with fixed shapes and no host reads inside a step; staggered first episodes render each
env once per step plus resets_per_step rows for new episodes.

MJX-Warp is MuJoCo C's physics, so the pixels must match the CPU MuJoCo path's frame for frame.
"""

from __future__ import annotations

import contextlib
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401
from envs.cartpole import CartpoleBalance, CartpoleConfig
from serl_gs.data.device_records import build_step_records, copy_to_host
from serl_gs.vec_batches import assemble_program, mjx_programs
from serl_gs.vec_env import SerlVectorEnv, VecEnvConfig
from tests.test_vec_env_resets import count_render_rows

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
        resets_per_step="auto",  # ceil(2 envs / 3 steps) = 1
        stagger=True,  # first episodes of 3 and 2 steps
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


def _late_render(vec) -> list:
    """Makes the images of the env's render stage late (see `_late`); returns the list they are added to."""
    render, late = vec.renderer.render, []

    def late_render(*poses, **options):
        late.append(_late(render(*poses, **options), SPINS))
        return late[-1]

    vec.renderer.render = late_render
    return late


def _pixel_diff(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32))


@pytest.mark.slow
def test_panda_pixels_on_mjx_warp_match_mujoco_c_through_staggered_autoreset(monkeypatch):
    mjx, cpu = _panda("mjx"), _panda("mujoco")
    assert mjx.mjx_impl == "warp" and cpu.mjx_impl is None
    assert mjx.resets_per_step == cpu.resets_per_step == 1
    rows_m, rows_c = count_render_rows(mjx), count_render_rows(cpu)
    obs_m, _ = mjx.reset(seed=4)
    obs_c, _ = cpu.reset(seed=4)
    for cam in CAMERAS:
        assert isinstance(obs_m[cam], jax.Array) and obs_m[cam].shape == (2, 16, 16, 3)
        np.testing.assert_array_equal(np.asarray(obs_m[cam]), np.asarray(obs_c[cam]))
    first = {cam: np.asarray(obs_m[cam]) for cam in CAMERAS}
    push = np.tile(np.array([1.0, 1.0, -1.0, 1.0], np.float32), (2, 1))  # full scale: saturates the servos
    push_on_device = jnp.asarray(push)
    step = mjx_programs(mjx.task, "warp", 2, 1)[2]
    compiled = None
    ends = []
    for i in range(5):
        if i == 1:  # env 1 ends here: see the step's host reads (the actor's step, as in the test below)
            reads = _host_reads(monkeypatch)
            render, late = mjx.renderer.render, _late_render(mjx)  # on a CPU the render reads poses on the host
        with jax.transfer_guard("disallow") if i == 1 else contextlib.nullcontext():
            obs_m, r_m, te_m, trunc_m, info_m = mjx.step_on_device(push_on_device)
            built = build_step_records(obs_m, push_on_device, r_m, te_m, trunc_m, info_m["final_obs"], {}, resets=1)
        if i == 0:
            # Other tests in this process may have compiled assemble_program(2) for other shapes first.
            compiled = (step._cache_size(), assemble_program(2)._cache_size())
        if i == 1:
            assert reads == [], f"the MJX pixel step read device arrays on the host: {reads}"
            assert not late[0].is_ready(), "the pixel step waited for its frames after rendering them"
            monkeypatch.undo()
            mjx.renderer.render = render
        records = copy_to_host(built, 2)
        assert records["obs/pixels/front"].shape[0] == 2 + int(np.asarray(trunc_m).sum())
        obs_c, r_c, _, trunc_c, info_c = cpu.step(push)
        # Each env rendered once per step, plus one row for a new episode: fixed on MJX, as needed on the CPU.
        assert rows_m[1:] == [3] * (i + 1) and rows_c[-1] == 2 + int(trunc_c.sum()), (rows_m, rows_c)
        np.testing.assert_array_equal(np.asarray(trunc_m), np.asarray(trunc_c))
        ends.append(np.flatnonzero(trunc_c).tolist())
        np.testing.assert_allclose(np.asarray(r_m), np.asarray(r_c), atol=1e-4)
        np.testing.assert_allclose(np.asarray(obs_m["state"]), np.asarray(obs_c["state"]), atol=1e-4)
        for cam in CAMERAS:
            # float32 (MJX) and float64 (C) poses may round a few edge pixels to the next level, no more.
            for got, want in ((obs_m[cam], obs_c[cam]), (info_m["final_obs"][cam], info_c["final_obs"][cam])):
                diff = _pixel_diff(got, want)
                assert diff.max() <= 8 and diff.mean() < 0.05, (i, cam, diff.max(), diff.mean())
            for env in np.flatnonzero(trunc_c):  # the final frame, then the new episode's first frame
                final, now = np.asarray(info_m["final_obs"][cam])[env], np.asarray(obs_m[cam])[env]
                assert _pixel_diff(final, first[cam][env]).mean() > 2.0, "the final frame shows where the arm went"
                assert _pixel_diff(now, final).mean() > 2.0, "obs is the new episode's first frame, not the last"
    assert ends == [[], [1], [0], [], [1]], "staggered: env 1's first episode is one step short, then 3 each"
    assert (step._cache_size(), assemble_program(2)._cache_size()) == compiled, "compiled once for every step"
    mjx.close()
    cpu.close()


class TerminatingCartpole(CartpoleBalance):
    """Cartpole whose every step terminates: more terminations than reset rows."""

    can_terminate = True

    def reward(self, qpos, qvel, info, action):
        reward, _, metrics = super().reward(qpos, qvel, info, action)
        return reward, jax.numpy.ones((), bool), metrics


@pytest.mark.slow
def test_more_terminations_than_reset_rows_is_an_error_one_step_later():
    config = VecEnvConfig(
        num_envs=2, physics="mjx", mjx_impl="warp", obs_mode="pixels", render_backend="reference", image_size=8,
        resets_per_step=1,
    )  # fmt: skip
    vec = SerlVectorEnv(TerminatingCartpole(CartpoleConfig(state_in_obs=False)), config)
    vec.reset(seed=0)
    vec.step(np.zeros((2, 1), np.float32))  # both envs terminate; only one new episode's first frame fits
    with pytest.raises(RuntimeError, match="more than resets_per_step=1 envs terminated"):
        vec.step(np.zeros((2, 1), np.float32))
    vec.close()


@functools.partial(jax.jit, static_argnums=1)
def _late(x: jax.Array, spins: int) -> jax.Array:
    """x itself, ready only after a long computation: a host read of anything computed from it waits for it."""
    spin = jax.lax.fori_loop(0, spins, lambda _, v: jnp.sin(v) + 1.0, jnp.zeros(1024)).max()
    return x + jnp.where(spin > 1e30, spin, 0.0).astype(x.dtype)  # + 0, which XLA cannot know


SPINS = 300_000  # ~1 s on an idle core: ample beside a step's dispatch (milliseconds)


def _actor_step(vec, actions):
    """What the actor does each step before its one copy to the host (serl_gs.nodes.actor)."""
    obs, reward, terminated, truncated, infos = vec.step_on_device(actions)
    extras = {"success": infos["success"]} if "success" in infos else {}
    built = build_step_records(
        obs, actions, reward, terminated, truncated, infos["final_obs"], extras, resets=vec.resets_per_step
    )
    return built


@pytest.mark.slow
def test_the_actor_step_waits_for_the_device_only_at_its_one_copy():
    """jax.transfer_guard sees device-to-host reads on a GPU but not on the CPU (CPU arrays are host memory, and
    np.asarray takes them through the buffer protocol), so the check here is the one that matters: a host read
    blocks until its array is computed. The step's input is made late (`_late`); a step that read anything on
    the host would return only after it. The actor's step returns at once, its copy then waits; gymnasium's
    `step()`, which reads reward and done flags on the host, is seen waiting."""
    vec = gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=2, physics="mjx", mjx_impl="warp", episode_length=2,
        resets_per_step="auto", stagger=True,
    )  # fmt: skip
    vec.reset(seed=0)
    actions = jnp.zeros((2, 1))
    for _ in range(3):  # compiled, and through a staggered reset
        jax.block_until_ready(_actor_step(vec, _late(actions, 1)))
    for _ in range(2):
        late = _late(actions, SPINS)
        with jax.transfer_guard("disallow"):
            built = _actor_step(vec, late)
        assert not late.is_ready(), "the actor's step read device memory on the host"
        records = copy_to_host(built, 2)  # the one read: it waits for the step
        assert late.is_ready() and records["obs/state"].shape[0] >= 2
    late = _late(actions, SPINS)
    vec.step(late)
    assert late.is_ready(), "the control: gymnasium's step() reads reward and done on the host, so it waits"
    vec.close()


def test_mjx_options_are_checked():
    with pytest.raises(ValueError, match="mjx_impl must be one of .* got 'cuda'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, physics="mjx", mjx_impl="cuda")
    with pytest.raises(ValueError, match=r"resets_per_step must be an int in \[1, num_envs=2\], 'auto' or None"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, resets_per_step=3)
