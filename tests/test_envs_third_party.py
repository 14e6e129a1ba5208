"""Our envs in other people's single-env tools: Stable-Baselines3's `check_env` with its render check, which
closes the env and then resets and steps it again (gymnasium's own MuJoCo envs survive that; so must ours).
SB3 is a pinned test dependency (requirements.txt)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

import envs  # noqa: F401  (registers the serl_gs/ ids)


@pytest.mark.slow
def test_sb3_check_env_with_its_render_check():
    env = gym.make(
        "serl_gs/CartpoleBalance-v0",
        physics="mujoco",
        render_mode="rgb_array",
        render_size=16,
        render_backend="reference",
    )
    check_env(env.unwrapped, warn=True, skip_render_check=False)  # render, close, then reset and step 10 times
    env.close()


def test_a_closed_env_says_so_and_reset_reopens_it():
    env = gym.make("serl_gs/CartpoleBalance-v0", physics="mujoco")
    env.reset(seed=0)
    first, *_ = env.step(np.zeros(1, np.float32))
    env.close()
    env.close()  # twice is fine, as gymnasium's envs
    with pytest.raises(RuntimeError, match=r"^this env was closed: reset\(\) reopens it$"):
        env.step(np.zeros(1, np.float32))
    env.reset(seed=0)
    again, *_ = env.step(np.zeros(1, np.float32))
    np.testing.assert_array_equal(again["state"], first["state"])  # a fresh physics batch, the same episode
    env.close()
