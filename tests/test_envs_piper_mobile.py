"""PiperMobilePick: the model matches its kinematics, the cube starts out of the arm's reach, the reward and
`success` are the documented formulas, the registered scripted expert solves >= 80 % of episodes, and MJX-Warp
runs the model as MuJoCo C does. The contract tests over every registered id (tests/test_envs.py: spaces,
jit-once, gymnasium's check_env; test_envs_gymnasium.py) cover the rest."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401  (registers the serl_gs/ ids and their experts)
from benchmarks.physics_agreement import state_trajectory
from envs import piper_kinematics as kin
from envs.piper_mobile import CUBE_HALF, FINGER_OPEN
from envs.piper_mobile_pick import (
    ARM_QPOS,
    CUBE_QPOS,
    CUBE_Z_ON_TABLE,
    PiperMobilePick,
    arm_to_world,
    world_to_arm,
)
from serl_gs.demos.experts import expert_for

ENV_ID = "serl_gs/PiperMobilePick-v0"
EXPERT_ENVS = 12  # the expert's episodes; the camera test steps the same batch, so it reuses the compiled step


def test_forward_kinematics_on_the_moving_base_matches_mujoco_tcp_site():
    task = PiperMobilePick()
    m, d = task.mj_model, mujoco.MjData(task.mj_model)
    tcp_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")


    @jax.jit
    def world_tcp(qpos):  # (position, rotation, back in the arm's frame, the arm's own position)
        base, (pos, rot) = qpos[:3], kin.tcp_pose(qpos[ARM_QPOS])
        world = arm_to_world(base, pos)
        return world, kin.rot_z(base[2]) @ rot, world_to_arm(base, world), pos

    rng = np.random.default_rng(1)
    for _ in range(4):
        d.qpos[:3] = rng.uniform([-0.5, -0.5, -np.pi], [0.5, 0.5, np.pi])
        d.qpos[ARM_QPOS] = rng.uniform(kin.JOINT_LOWER, kin.JOINT_UPPER)
        mujoco.mj_kinematics(m, d)
        pos, rot, back, arm_pos = map(np.asarray, world_tcp(jnp.asarray(d.qpos, jnp.float32)))
        np.testing.assert_allclose(pos, d.site_xpos[tcp_site], atol=1e-5)
        np.testing.assert_allclose(rot, d.site_xmat[tcp_site].reshape(3, 3), atol=1e-5)
        np.testing.assert_allclose(back, arm_pos, atol=1e-5)


def test_ik_points_the_gripper_down_at_any_wrist_yaw_across_the_pick_zone():
    q = jnp.asarray(kin.HOME_QPOS)
    pos, rot = kin.tcp_pose(q)  # home: 25 cm ahead, 10 cm up, pointing down, jaws along y
    np.testing.assert_allclose(np.asarray(pos), [0.25, 0.0, 0.1], atol=1e-3)
    np.testing.assert_allclose(np.asarray(rot), np.asarray(kin.down_rotation(0.0)), atol=1e-3)
    targets = jnp.array([(0.3, 0.0, -0.03), (0.35, 0.1, 0.05), (0.22, -0.12, 0.0)])
    yaws = jnp.array([0.6, -0.7, 0.0])

    @jax.jit
    @jax.vmap
    def solve(p, yaw):  # (joints, their tcp pose, the rotation asked)
        want = kin.down_rotation(yaw)
        q_sol = kin.solve_ik(q, p, want, iterations=30)
        return (q_sol, *kin.tcp_pose(q_sol), want)

    q_sol, pos, rot, want = map(np.asarray, solve(targets, yaws))
    np.testing.assert_allclose(pos, targets, atol=3e-3)
    np.testing.assert_allclose(rot, want, atol=3e-2)
    assert (q_sol >= np.asarray(kin.JOINT_LOWER) - 1e-6).all() and (q_sol <= np.asarray(kin.JOINT_UPPER) + 1e-6).all()


def test_the_cube_starts_on_the_table_out_of_the_arms_reach():
    task = PiperMobilePick()
    qpos = jax.jit(jax.vmap(lambda k: task.init(k)[0]))(jax.random.split(jax.random.PRNGKey(0), 256))
    assert qpos.shape == (256, task.mj_model.nq)
    np.testing.assert_allclose(qpos[:, CUBE_QPOS][:, 2], CUBE_Z_ON_TABLE)
    cube_in_arm = np.asarray(jax.jit(jax.vmap(world_to_arm))(qpos[:, :3], qpos[:, CUBE_QPOS]))
    # The arm's longest reach from joint 1: shoulder height plus both links, the wrist and the tool.
    longest = 0.123 + 0.28503 + np.hypot(0.021984, 0.25075) + 0.091 + kin.TCP_OFFSET
    assert np.linalg.norm(cube_in_arm, axis=1).min() > longest


def test_reward_and_success_follow_the_documented_formula():
    task = PiperMobilePick()
    qpos, qvel, _, info = jax.jit(task.init)(jax.random.PRNGKey(2))
    action = jnp.zeros(7)
    reward_of = jax.jit(task.reward)
    # Hand-built: the cube in the closed gripper at its start pose (13 cm above the table): reach and lift full.
    tcp = arm_to_world(qpos[:3], kin.tcp_position(qpos[ARM_QPOS]))
    held = qpos.at[CUBE_QPOS].set(tcp).at[9:11].set(CUBE_HALF)
    lift = float(tcp[2]) - CUBE_Z_ON_TABLE
    reward, terminated, m = reward_of(held, qvel, info, action)
    assert lift > 0.1 and not bool(terminated) and float(m["success"]) == 1.0
    mount = arm_to_world(qpos[:3], jnp.zeros(3))
    expected_base = np.exp(-3 * max(float(jnp.linalg.norm(tcp[:2] - mount[:2])) - 0.4, 0.0))
    np.testing.assert_allclose(float(m["reward_base"]), expected_base, rtol=1e-5)
    np.testing.assert_allclose(float(reward), 0.2 * expected_base + 0.3 + 0.5, rtol=1e-5)
    # At the start: the cube rests far away, the gripper open.
    reward, _, m = reward_of(qpos, qvel, info, action)
    assert float(m["success"]) == 0.0 and float(m["reward_lift"]) == 0.0
    assert float(qpos[9] + qpos[10]) == pytest.approx(2 * FINGER_OPEN)
    assert float(m["reward_base"]) < 0.3 and float(reward) < 0.1


@pytest.mark.slow
def test_registered_scripted_expert_drives_and_picks_in_at_least_80_percent_of_episodes():
    # The expert the demo recorder and interventions use, on the pixel policy's state (no cube in it).
    n = EXPERT_ENVS
    vec = gym.make_vec(ENV_ID, num_envs=n, physics="mujoco", array_backend="numpy", cube_in_state=False)
    expert = expert_for(ENV_ID)
    obs, _ = vec.reset(seed=5)
    rewards = []
    for _ in range(vec.task.episode_length):
        obs, reward, terminated, truncated, infos = vec.step(expert(vec, obs))
        rewards.append(reward)
    vec.close()
    assert truncated.all() and not terminated.any()
    success = infos["success"]  # at the episode's last step, as the actor and eval count it
    assert success.mean() >= 0.8, success
    assert np.mean(rewards[-1]) > 4 * np.mean(rewards[0]), "the dense reward rises as the robot drives and lifts"


@pytest.mark.slow
def test_mjx_warp_and_cpu_mujoco_agree_on_the_mobile_pick():
    # tests/test_physics_paths.py's check (full-scale actions, tolerance 2e-4) on what the mobile Piper brings:
    # slide and hinge joints under velocity actuators, a 6-DoF arm riding on them, the gripper's pairs. The
    # state holds the base pose and speeds, the tcp, the opening and the cube.
    actions = np.sign(np.random.default_rng(1).uniform(-1, 1, (8, 2, 7))).astype(np.float32)
    warp_traj = state_trajectory(ENV_ID, actions, physics="mjx", mjx_impl="warp")
    cpu_traj = state_trajectory(ENV_ID, actions, physics="mujoco")
    np.testing.assert_array_equal(warp_traj[0], cpu_traj[0])  # same key, same start
    np.testing.assert_allclose(warp_traj, cpu_traj, atol=2e-4)
    moved = np.abs(cpu_traj[-1] - cpu_traj[0]).max(axis=0)
    assert moved[:2].max() > 0.01 and moved[7:10].max() > 0.03, "the actions must move the base and the arm"


def test_cameras_ride_on_the_base_and_the_hand_as_the_expert_drives():
    # What the renderer reads (serl_gs.render.preview.env_poses, the vector env's body_poses): during the expert's
    # drive, each camera is where its body's pose puts it (the base camera on the base, the wrist's on the hand).
    from serl_gs.render.preview import env_poses

    # 40 steps: the expert's drive is under way, the base past x = 0 (it starts at x <= -0.25).
    model, (xpos, xquat, cam_xpos, cam_xmat) = env_poses(
        ENV_ID, num_envs=EXPERT_ENVS, steps=40, seed=3, expert=True, cube_in_state=False
    )
    for cam in range(model.ncam):
        body = model.cam_bodyid[cam]
        for env in range(EXPERT_ENVS):
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, xquat[env, body])
            want = xpos[env, body] + rot.reshape(3, 3) @ model.cam_pos[cam]
            np.testing.assert_allclose(cam_xpos[env, cam], want, atol=1e-5)
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, xquat[env, body], model.cam_quat[cam])
            mujoco.mju_quat2Mat(rot, quat)
            np.testing.assert_allclose(np.reshape(cam_xmat[env, cam], 9), rot, atol=1e-5)
    base_cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "base")
    assert model.body(model.cam_bodyid[base_cam]).name == "base"
    assert (xpos[:, model.cam_bodyid[base_cam], 0] > 0.0).all(), "the base has driven towards the table"
