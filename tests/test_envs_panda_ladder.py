"""The Panda ladder's tasks beyond PandaPickCube: each is solvable (its scripted solver succeeds in >= 80 % of
episodes). The contract tests over every registered id (tests/test_envs.py, test_envs_gymnasium.py) cover the
rest."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401  (registers the serl_gs/ ids)
from envs.panda_reach_cube import scripted_reach


@pytest.mark.slow
def test_scripted_reach_succeeds_in_at_least_80_percent_of_episodes():
    n = 16
    vec = gym.make_vec("serl_gs/PandaReachCube-v0", num_envs=n, physics="mujoco", array_backend="numpy")
    obs, _ = vec.reset(seed=5)
    act = jax.jit(jax.vmap(scripted_reach))
    rewards = []
    for t in range(vec.task.episode_length):
        obs, reward, terminated, truncated, infos = vec.step(np.asarray(act(jnp.asarray(obs["state"]), jnp.full(n, t))))
        rewards.append(reward)
    vec.close()
    assert truncated.all() and not terminated.any()
    success = infos["success"]  # at the episode's last step, as the actor and eval count it
    assert success.mean() >= 0.8, success
    assert np.mean(rewards[-1]) > 2 * np.mean(rewards[0]), "the dense reward rises as the gripper closes in"
