"""Both physics paths (MJX and CPU MuJoCo) run the same task code and must agree.

MJX runs in float32, MuJoCo C in float64, so trajectories agree to a tolerance, not bit for bit; the horizons
here are short enough for chaos (contacts) not to amplify the difference.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401


def _trajectory(env_id: str, physics: str, actions: np.ndarray, **task_kwargs) -> np.ndarray:
    vec = gym.make_vec(env_id, num_envs=actions.shape[1], physics=physics, array_backend="numpy", **task_kwargs)
    obs, _ = vec.reset(seed=11)
    states = [obs["state"]]
    for a in actions:
        obs, *_ = vec.step(a)
        states.append(obs["state"])
    vec.close()
    return np.stack(states)


def test_cartpole_mjx_and_cpu_mujoco_agree():
    actions = np.random.default_rng(0).uniform(-1, 1, (60, 3, 1)).astype(np.float32)
    mjx_traj = _trajectory("serl_gs/CartpoleBalance-v0", "mjx", actions)
    cpu_traj = _trajectory("serl_gs/CartpoleBalance-v0", "mujoco", actions)
    np.testing.assert_array_equal(mjx_traj[0], cpu_traj[0])  # same key, same start
    np.testing.assert_allclose(mjx_traj, cpu_traj, atol=2e-3)
    assert np.abs(mjx_traj[-1] - mjx_traj[0]).max() > 0.1, "the actions must move the system"


@pytest.mark.slow
def test_panda_mjx_and_cpu_mujoco_agree():
    # Moves the arm (IK + servos + gripper) for 8 control steps; the cube rests on the table meanwhile.
    # Moderate actions: where the joint servos saturate at their force limits the two engines part ways by
    # centimetres (measured; see README "Physics paths"), at rest they agree exactly.
    rng = np.random.default_rng(1)
    actions = (0.25 * rng.uniform(-1, 1, (8, 2, 4))).astype(np.float32)
    mjx_traj = _trajectory("serl_gs/PandaPickCube-v0", "mjx", actions)
    cpu_traj = _trajectory("serl_gs/PandaPickCube-v0", "mujoco", actions)
    np.testing.assert_array_equal(mjx_traj[0], cpu_traj[0])
    tcp_mjx, tcp_cpu = mjx_traj[..., :3], cpu_traj[..., :3]
    np.testing.assert_allclose(tcp_mjx, tcp_cpu, atol=5e-3)  # tcp position, metres
    np.testing.assert_allclose(mjx_traj[..., 6], cpu_traj[..., 6], atol=2e-3)  # gripper opening
    np.testing.assert_allclose(mjx_traj[..., 7:10], cpu_traj[..., 7:10], atol=2e-3)  # cube position
    assert np.abs(tcp_cpu[-1] - tcp_cpu[0]).max() > 0.02, "the actions must move the arm"
