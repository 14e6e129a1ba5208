"""Env state save/restore (serl_gs.env_state): pickle-free bytes from which a vector env (all envs or some) or a
single env continues bit-identically, on MuJoCo C and on MJX (Warp and JAX).

The MJX cases use the batch of tests/test_physics_paths.py (cartpole, 3 envs), whose compiled programs the
process already holds when the suite runs in order."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from serl_gs.env_state import decode

ACTIONS = np.random.default_rng(0).uniform(-1, 1, (24, 3, 1)).astype(np.float32)


def _cartpole(physics: str, impl: str | None = None, **kwargs):
    extra = {"mjx_impl": impl} if impl else {}
    return gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=3, physics=physics, array_backend="numpy", **extra, **kwargs
    )


def _run(env, actions) -> list:
    out = []
    for a in actions:
        obs, reward, term, trunc, infos = env.step(a)
        out.append((obs, reward, term, trunc, infos["final_obs"], infos["episode_step"]))
    return out


def _assert_same(a: list, b: list, rows=slice(None)) -> None:
    for sa, sb in zip(a, b, strict=True):
        for x, y in zip(sa, sb, strict=True):
            if isinstance(x, dict):
                for k in x:
                    np.testing.assert_array_equal(x[k][rows], y[k][rows], err_msg=k)
            else:
                np.testing.assert_array_equal(x[rows], y[rows])


@pytest.mark.parametrize(
    "physics,impl",
    [
        ("mujoco", None),
        pytest.param("mjx", "warp", marks=pytest.mark.slow),
        pytest.param("mjx", "jax", marks=pytest.mark.slow),
    ],
)
def test_restored_batch_continues_bit_identically(physics, impl):
    # On MuJoCo C episodes end (and autoreset) after the restore; MJX keeps the default length, so it reuses
    # the programs test_physics_paths compiled.
    env = _cartpole(physics, impl, **({"episode_length": 12} if physics == "mujoco" else {}))
    env.reset(seed=11)
    _run(env, ACTIONS[:5])
    blob = env.get_state()
    assert isinstance(blob, bytes)
    want = _run(env, ACTIONS[5:])
    if physics == "mujoco":
        assert any(s[3].any() for s in want), "an episode must end after the restore: autoreset's rng is covered"
    env.set_state(blob)
    _assert_same(_run(env, ACTIONS[5:]), want)
    env.close()


def test_subset_of_envs_saved_and_restored_into_others():
    env = _cartpole("mujoco", episode_length=12)
    env.reset(seed=3)
    _run(env, ACTIONS[:4])
    blob = env.get_state(env_ids=[1])
    meta, _ = decode(blob)
    assert meta["env_ids"] == [1] and meta["physics"] == "mujoco"
    _run(env, ACTIONS[4:9])
    assert env.set_state(blob, env_ids=[2]) == [2]  # env 1's state, four steps in, now in env 2 as well
    env2_obs = env._obs["state"][2]
    env.set_state(blob)  # and back into env 1
    np.testing.assert_array_equal(env._obs["state"][1], env2_obs)
    same = np.repeat(ACTIONS[9:15, :1], 3, axis=1)  # one action for all envs: rows 1 and 2 must stay equal
    out = _run(env, same)
    _assert_same([(s[0],) for s in out], [({k: v[[2, 2, 2]] for k, v in s[0].items()},) for s in out], rows=1)
    env.close()


def test_single_env_restores_mid_episode():
    env = gym.make("serl_gs/CartpoleBalance-v0", physics="mujoco", episode_length=12).unwrapped
    env.reset(seed=5)
    for a in ACTIONS[:3, 0]:
        env.step(a)
    blob = env.get_state()
    want = [env.step(a) for a in ACTIONS[3:6, 0]]
    env.set_state(blob)
    got = [env.step(a) for a in ACTIONS[3:6, 0]]
    for (o1, r1, *_), (o2, r2, *_) in zip(want, got, strict=True):
        for k in o1:
            np.testing.assert_array_equal(o1[k], o2[k])
        assert r1 == r2
    env.close()


def test_state_of_another_env_or_junk_is_refused():
    cart = _cartpole("mujoco", episode_length=12)
    cart.reset(seed=0)
    blob = cart.get_state()
    other = _cartpole("mujoco", episode_length=7)
    with pytest.raises(ValueError, match="task_config"):
        other.set_state(blob)
    with pytest.raises(ValueError, match="not serl_gs env state|too short|header"):
        cart.set_state(b"\x80\x04junk pickle")
    with pytest.raises(ValueError, match="env_ids"):
        cart.get_state(env_ids=[3])
    with pytest.raises(ValueError, match="holds 3 envs"):
        cart.set_state(blob, env_ids=[0])
    cart.close()
    other.close()
