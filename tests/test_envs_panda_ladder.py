"""The Panda ladder's tasks beyond PandaPickCube: each is solvable (its scripted solver succeeds in >= 80 % of
episodes), its reward and `success` are the documented formulas, and MJX-Warp runs its model as MuJoCo C does.
The contract tests over every registered id (tests/test_envs.py: spaces, jit-once, gymnasium's check_env;
test_envs_gymnasium.py) cover the rest."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401  (registers the serl_gs/ ids and their experts)
from benchmarks.physics_agreement import state_trajectory
from envs.panda_pick_cube import CUBE_HALF, CUBE_QPOS, FINGER_OPEN
from envs.panda_place_cube import TARGET_QPOS, PandaPlaceCube
from envs.panda_reach_cube import scripted_reach
from envs.panda_stack_cube import CUBE_B_QPOS, PandaStackCube
from serl_gs.demos.experts import expert_for


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


# The share of episodes each expert must solve (the 0.8). Pooled over 4 seeds x 32 episodes: place 113 of
# 128 (88 %), stack 114 of 128 (89 %), benchmarks/results/ladder_solvers-stack-cpu2-2026-12-07.jsonl. The stack's
# expert solved 70 % while its clock opened the gripper at a fixed step, dropping the cube whenever the carry ran
# late; its remaining misses: the cube sliding out of the pads on long carries near the base, the hand lagging
# its target there, a missed grasp.
REQUIRED_SUCCESS = {"serl_gs/PandaPlaceCube-v0": 0.8, "serl_gs/PandaStackCube-v0": 0.8}


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(REQUIRED_SUCCESS))
def test_registered_scripted_expert_places_the_cube(env_id):
    # The expert the demo recorder and interventions use (serl_gs.demos.experts), on the pixel policy's state
    # (no cube, no goal in the observation): it reads the simulator's state, as PandaPickCube's does.
    n = 16
    vec = gym.make_vec(env_id, num_envs=n, physics="mujoco", array_backend="numpy", cube_in_state=False)
    expert = expert_for(env_id)
    obs, _ = vec.reset(seed=5)
    rewards = []
    for _ in range(vec.task.episode_length):
        obs, reward, terminated, truncated, infos = vec.step(expert(vec, obs))
        rewards.append(reward)
    vec.close()
    assert truncated.all() and not terminated.any()
    success = infos["success"]  # at the episode's last step, as the actor and eval count it
    assert success.mean() >= REQUIRED_SUCCESS[env_id], success
    assert np.mean(rewards[-1]) > 2 * np.mean(rewards[0]), "the dense reward rises as the cube reaches its goal"


def _placed_state(task, *, opening: float, lift: float = 0.0):
    """qpos with the cube resting on the task's goal (plus `lift`), fingers at `opening`, the arm at home."""
    qpos, qvel, _, info = task.init(jax.random.PRNGKey(0))
    goal = task.goal(qpos)
    qpos = qpos.at[CUBE_QPOS].set(goal + jnp.array([0.0, 0.0, lift])).at[7:9].set(opening / 2)
    return qpos, qvel, info, goal


@pytest.mark.parametrize("task_cls", [PandaPlaceCube, PandaStackCube])
def test_reward_and_success_follow_the_documented_formula(task_cls):
    task = task_cls()
    action = jnp.zeros(4)
    # Released on the goal, at rest: success, and every term but the reach's distance is full.
    qpos, qvel, info, goal = _placed_state(task, opening=2 * FINGER_OPEN)
    reward, terminated, m = task.reward(qpos, qvel, info, action)
    assert float(m["success"]) == 1.0 and not bool(terminated)
    np.testing.assert_allclose(float(reward), 1.0, atol=1e-5)  # 0.2 + 0.2 + 0.4 * exp(0) + 0.2 * 1
    # Still gripped (fingers closed on it): placed but not released, so no success and a smaller release term.
    qpos_held, *_ = _placed_state(task, opening=2 * CUBE_HALF)
    reward_held, _, m = task.reward(qpos_held, qvel, info, action)
    assert float(m["success"]) == 0.0
    np.testing.assert_allclose(float(reward_held), 0.8 + 0.2 * CUBE_HALF / FINGER_OPEN, atol=1e-5)
    # Moving: not at rest, no success.
    moving = qvel.at[9].set(0.2)
    assert float(task.reward(qpos, moving, info, action)[2]["success"]) == 0.0
    # 5 cm above the goal: not placed; the goal term is exp(-10 * 0.05).
    qpos_up, *_ = _placed_state(task, opening=2 * FINGER_OPEN, lift=0.05)
    _, _, m = task.reward(qpos_up, qvel, info, action)
    assert float(m["success"]) == 0.0
    np.testing.assert_allclose(float(m["reward_goal"]), np.exp(-0.5), rtol=1e-5)


def test_goal_is_the_mark_or_the_top_of_the_other_cube_and_starts_apart_from_the_cube():
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    place, stack = PandaPlaceCube(), PandaStackCube()
    for task, goal_qpos, height in ((place, TARGET_QPOS, CUBE_HALF), (stack, CUBE_B_QPOS, 3 * CUBE_HALF)):
        qpos = jax.vmap(lambda k, t=task: t.init(k)[0])(keys)
        assert qpos.shape == (64, task.mj_model.nq)
        goal = jax.vmap(task.goal)(qpos)
        np.testing.assert_allclose(goal[:, :2], qpos[:, goal_qpos][:, :2])
        np.testing.assert_allclose(goal[:, 2], height, atol=1e-6)
        gap = np.linalg.norm(np.asarray(qpos[:, CUBE_QPOS][:, :2] - goal[:, :2]), axis=1)
        assert gap.min() >= task.config.min_separation


@pytest.mark.slow
def test_mjx_warp_and_cpu_mujoco_agree_on_the_stack():
    # tests/test_physics_paths.py's Panda check (full-scale actions, tolerance 2e-4) on what PandaStackCube adds
    # to PandaPickCube's model: a second free cube and its contact pairs. (PandaPlaceCube's mark on two slide
    # joints passes the same check, largest gap 8.6e-6: benchmarks/results/place-agreement-cpu2-2026-12-07.jsonl;
    # it is left out to keep the suite short: each model's Warp compile costs ~30 s on a CPU.)
    env_id = "serl_gs/PandaStackCube-v0"
    actions = np.sign(np.random.default_rng(1).uniform(-1, 1, (8, 2, 4))).astype(np.float32)
    warp_traj = state_trajectory(env_id, actions, physics="mjx", mjx_impl="warp")
    cpu_traj = state_trajectory(env_id, actions, physics="mujoco")
    np.testing.assert_array_equal(warp_traj[0], cpu_traj[0])  # same key, same start
    np.testing.assert_allclose(warp_traj, cpu_traj, atol=2e-4)
    assert np.abs(cpu_traj[-1, :, :3] - cpu_traj[0, :, :3]).max() > 0.05, "the actions must move the arm"
