"""Action repeat (Task.action_repeat): one env step = k control steps with the same action, rewards summed, an
episode end inside the repeat stops it; both physics paths."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401

CARTPOLE = "serl_gs/CartpoleBalance-v0"


def _run(physics: str, actions: np.ndarray, **task_kwargs):
    """Steps a numpy vector env through actions [T, N, A]: obs, rewards, ends and final obs of every step."""
    vec = gym.make_vec(CARTPOLE, num_envs=actions.shape[1], physics=physics, array_backend="numpy", **task_kwargs)
    obs, _ = vec.reset(seed=3)
    rows = [(obs["state"], None, None, None)]
    for a in actions:
        obs, reward, terminated, truncated, infos = vec.step(a)
        final = np.where(infos["_final_obs"][:, None], infos["final_obs"]["state"], np.nan)
        rows.append((obs["state"], reward, terminated | truncated, final))
    vec.close()
    return rows


def test_one_step_of_k_equals_k_steps_of_one_with_summed_rewards():
    # On CPU MuJoCo; MJX runs the same accumulation (serl_gs.mjx_env.accumulate_repeat), checked against it below.
    k = 4
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 1)).astype(np.float32)
    repeated = _run("mujoco", actions, action_repeat=k)
    single = _run("mujoco", np.repeat(actions, k, axis=0))
    np.testing.assert_array_equal(repeated[0][0], single[0][0])
    for t in range(1, len(repeated)):
        obs, reward, _, _ = repeated[t]
        np.testing.assert_allclose(obs, single[t * k][0], rtol=1e-5, atol=1e-6)
        summed = sum(single[t * k - i][1] for i in range(k))
        np.testing.assert_allclose(reward, summed, rtol=1e-5)
        assert np.all(reward > 1.0), "four control steps of reward in [0, 1] each, the pole up"


@pytest.mark.parametrize("physics", ["mujoco", "mjx"])
def test_an_episode_end_inside_a_repeat_stops_it_and_the_next_episode_starts(physics):
    # Episodes of 5 control steps, repeat 3: env steps cover control steps 1-3, then 4-5 (the end, mid-repeat).
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 2, 1)).astype(np.float32)
    repeated = _run(physics, actions, action_repeat=3, episode_length=5)
    single = _run(physics, np.repeat(actions, 3, axis=0)[:5], episode_length=5)
    _, reward, done, final = repeated[2]
    assert done.all() and not repeated[1][2].any()
    np.testing.assert_allclose(reward, single[4][1] + single[5][1], rtol=1e-5)  # control steps 4 and 5 only
    np.testing.assert_allclose(final, single[5][3], rtol=1e-5, atol=1e-6)  # the state where the episode ended
    # The new episode's first obs (autoreset) and then a full 3-step repeat in it.
    assert np.isfinite(repeated[3][1]).all() and not repeated[3][2].any()
    assert np.all(repeated[3][1] > 2.0)


def test_both_physics_paths_agree_under_action_repeat():
    # The options of the test above (one MJX compile for both): two episodes, each ending inside a repeat.
    actions = np.random.default_rng(2).uniform(-1, 1, (4, 2, 1)).astype(np.float32)
    mjx_rows = _run("mjx", actions, action_repeat=3, episode_length=5)
    cpu_rows = _run("mujoco", actions, action_repeat=3, episode_length=5)
    for (m_obs, m_rew, m_done, m_final), (c_obs, c_rew, c_done, c_final) in zip(mjx_rows, cpu_rows, strict=True):
        np.testing.assert_allclose(m_obs, c_obs, atol=2e-3)
        if m_rew is not None:
            np.testing.assert_allclose(m_rew, c_rew, atol=2e-3)
            np.testing.assert_array_equal(m_done, c_done)
            np.testing.assert_allclose(m_final, c_final, atol=2e-3)  # NaN where no episode ended, in both
    assert sum(row[2].sum() for row in cpu_rows[1:]) == 4  # both envs ended twice


def test_action_repeat_must_be_a_positive_int():
    with pytest.raises(ValueError, match="action_repeat must be an int >= 1, got 0"):
        gym.make_vec(CARTPOLE, num_envs=1, action_repeat=0)


def test_pixel_cartpole_sees_pixels_only_and_state_mode_needs_the_state():
    vec = gym.make_vec(CARTPOLE, num_envs=2, obs_mode="pixels", image_size=8, render_backend="reference",
                       action_repeat=8, array_backend="numpy")  # fmt: skip
    obs, _ = vec.reset(seed=0)
    assert set(obs) == {"pixels/fixed"} and obs["pixels/fixed"].shape == (2, 8, 8, 3)
    obs, reward, *_ = vec.step(np.zeros((2, 1), np.float32))
    assert reward.shape == (2,) and np.all(reward > 4.0)  # 8 control steps near upright
    vec.close()
    with pytest.raises(ValueError, match="observes nothing"):
        gym.make_vec(CARTPOLE, num_envs=1, state_in_obs=False)
