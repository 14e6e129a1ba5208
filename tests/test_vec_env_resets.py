"""Staggered first episodes and the resets_per_step bound: each env is rendered once per step plus at most
resets_per_step rows for new episodes' first frames (CPU MuJoCo here; MJX-Warp in test_vec_env_mjx.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.cartpole import CartpoleBalance, CartpoleConfig
from serl_gs.vec_batches import stagger_program
from serl_gs.vec_env import resolve_resets_per_step


def count_render_rows(vec) -> list[int]:
    """Rows of every call to the env's render stage, in order."""
    rows: list[int] = []
    render = vec.renderer.render

    def counted(*poses, **options):
        rows.append(len(poses[0]))
        return render(*poses, **options)

    vec.renderer.render = counted
    return rows


def test_staggered_limits_spread_time_limits_evenly():
    # 10 control steps, repeat 3: an episode spans n = 4 env steps; 8 envs are cut by 0, 0, 1, 1, 2, 2, 3, 3.
    task = CartpoleBalance(CartpoleConfig(episode_length=10, action_repeat=3))
    state = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=8, episode_length=10, action_repeat=3)
    state.reset(seed=0)
    limits = np.asarray(stagger_program(task, 8)(state.state).info["limit"])
    np.testing.assert_array_equal(limits, [10, 10, 7, 7, 4, 4, 1, 1])
    env_steps = -(-limits // 3)  # each env's first episode, in env steps
    np.testing.assert_array_equal(np.bincount(env_steps), [0, 2, 2, 2, 2])  # ceil(8 / 4) = 2 ends per step
    assert resolve_resets_per_step("auto", task, 8) == (2, "auto: ceil(8 envs / 4 env steps per episode)")
    state.close()


@pytest.mark.slow
def test_staggered_pixel_env_renders_each_env_once_per_step_on_cpu_mujoco():
    n, length = 4, 2
    vec = gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=n, physics="mujoco", obs_mode="pixels", render_backend="reference",
        image_size=8, episode_length=length, resets_per_step="auto", stagger=True,
    )  # fmt: skip
    assert vec.resets_per_step == 2  # ceil(4 envs / 2 steps)
    rows = count_render_rows(vec)
    vec.reset(seed=1)
    lengths: list[list[int]] = [[] for _ in range(n)]
    for t in range(5):
        calls = len(rows)
        obs, _, terminated, truncated, infos = vec.step(np.zeros((n, 1), np.float32))
        ended = np.flatnonzero(terminated | truncated)
        assert len(rows) == calls + 1, "one render call per step"
        assert rows[-1] == n + len(ended) <= n + vec.resets_per_step, (t, rows[-1], ended)
        assert len(ended) == 2, f"step {t}: the staggered limits end 2 envs every step, got {ended}"
        for i in ended:
            lengths[i].append(int(np.asarray(infos["episode_step"])[i]))
    # First episodes cut by 0, 0, 1, 1 steps; every later one is full length.
    assert [ep[0] for ep in lengths] == [2, 2, 1, 1]
    assert all(ep[1:] and set(ep[1:]) == {2} for ep in lengths), lengths
    vec.close()


def test_surplus_truncations_end_at_the_next_steps_with_room():
    # Three envs reach their limit together (no stagger); one ending per step: env 0, then 1, then 2, those past
    # their limit before those just at it.
    vec = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=3, physics="mujoco", episode_length=2, resets_per_step=1)
    vec.reset(seed=0)
    ends = []
    for _ in range(5):
        _, _, terminated, truncated, infos = vec.step(np.zeros((3, 1), np.float32))
        assert not terminated.any()
        ends.append([(int(i), int(np.asarray(infos["episode_step"])[i])) for i in np.flatnonzero(truncated)])
    assert ends == [[], [(0, 2)], [(1, 3)], [(2, 4)], [(0, 3)]]  # env 0 waited for env 2, overdue
    vec.close()


def test_resets_per_step_is_checked():
    with pytest.raises(ValueError, match=r"resets_per_step must be an int in \[1, num_envs=2\], 'auto' or None, got 3"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, resets_per_step=3)
    with pytest.raises(ValueError, match="stagger must be a bool, got 'yes'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, stagger="yes")


def test_actor_resets_and_mjx_options_are_checked():
    from actors.actor import parse_resets_per_step
    from serl_gs.nodes.actor import ActorConfig

    assert [parse_resets_per_step(v) for v in ("auto", "all", "12")] == ["auto", None, 12]
    with pytest.raises(ValueError, match="--resets_per_step must be 'auto', 'all' or a positive int, got '0'"):
        parse_resets_per_step("0")
    with pytest.raises(ValueError, match="resets_per_step must be 'auto', None or an int >= 1, got 'many'"):
        ActorConfig(resets_per_step="many")
    with pytest.raises(ValueError, match="mjx_impl must be one of .* got 'cuda'"):
        ActorConfig(mjx_impl="cuda")
