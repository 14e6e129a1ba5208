"""Every physics path (MuJoCo C, MJX-JAX, MJX-Warp) runs the same task code; they must agree, and on each the
frame rendered must be the state observed.

MJX runs in float32, MuJoCo C in float64, so trajectories agree to a tolerance, not bit for bit; the horizons
here are short enough for chaos (contacts) not to amplify the difference. MJX-Warp is MuJoCo C's physics and
agrees with it even where the Panda's joint servos saturate; MJX-JAX parts ways there (docs/physics-paths.md),
so its Panda comparison keeps the actions moderate.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401
from benchmarks.physics_agreement import state_trajectory
from envs.panda_pick_cube import PandaPickCube, scripted_action
from serl_gs.mjx_env import warp_capacity

PATHS = [("mujoco", None), ("mjx", "jax"), ("mjx", "warp")]
PATH_IDS = ["mujoco", "mjx-jax", "mjx-warp"]


def _make(env_id: str, physics: str, impl: str | None, num_envs: int, **kwargs):
    if impl is not None:
        kwargs["mjx_impl"] = impl
    return gym.make_vec(env_id, num_envs=num_envs, physics=physics, array_backend="numpy", **kwargs)


def _trajectory(env_id: str, physics: str, impl: str | None, actions: np.ndarray) -> np.ndarray:
    kwargs = {} if impl is None else {"mjx_impl": impl}
    return state_trajectory(env_id, actions, physics=physics, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["jax", "warp"])
def test_cartpole_mjx_and_cpu_mujoco_agree(impl):
    actions = np.random.default_rng(0).uniform(-1, 1, (60, 3, 1)).astype(np.float32)
    mjx_traj = _trajectory("serl_gs/CartpoleBalance-v0", "mjx", impl, actions)
    cpu_traj = _trajectory("serl_gs/CartpoleBalance-v0", "mujoco", None, actions)
    np.testing.assert_array_equal(mjx_traj[0], cpu_traj[0])  # same key, same start
    np.testing.assert_allclose(mjx_traj, cpu_traj, atol=2e-3)
    assert np.abs(mjx_traj[-1] - mjx_traj[0]).max() > 0.1, "the actions must move the system"


@pytest.mark.slow
def test_panda_mjx_warp_and_cpu_mujoco_agree_with_saturated_servos():
    # Full-scale actions: big IK jumps drive the joint servos into their force limits, where MJX-JAX parts ways
    # by centimetres. MJX-Warp skips saturated actuators in its implicit damping as MuJoCo C does.
    rng = np.random.default_rng(1)
    actions = np.sign(rng.uniform(-1, 1, (8, 2, 4))).astype(np.float32)
    warp_traj = _trajectory("serl_gs/PandaPickCube-v0", "mjx", "warp", actions)
    cpu_traj = _trajectory("serl_gs/PandaPickCube-v0", "mujoco", None, actions)
    np.testing.assert_array_equal(warp_traj[0], cpu_traj[0])
    np.testing.assert_allclose(warp_traj, cpu_traj, atol=2e-4)
    assert np.abs(cpu_traj[-1, :, :3] - cpu_traj[0, :, :3]).max() > 0.05, "the actions must move the arm"


@pytest.mark.slow
def test_panda_mjx_jax_and_cpu_mujoco_agree():
    # Moves the arm (IK + servos + gripper) for 8 control steps; the cube rests on the table meanwhile.
    # Moderate actions: where the joint servos saturate at their force limits MJX-JAX and MuJoCo C part ways by
    # centimetres (docs/physics-paths.md), at rest they agree exactly. (The Panda's MJX-JAX step takes a minute
    # or more to compile on a CPU.)
    rng = np.random.default_rng(1)
    actions = (0.25 * rng.uniform(-1, 1, (8, 2, 4))).astype(np.float32)
    mjx_traj = _trajectory("serl_gs/PandaPickCube-v0", "mjx", "jax", actions)
    cpu_traj = _trajectory("serl_gs/PandaPickCube-v0", "mujoco", None, actions)
    np.testing.assert_array_equal(mjx_traj[0], cpu_traj[0])
    tcp_mjx, tcp_cpu = mjx_traj[..., :3], cpu_traj[..., :3]
    np.testing.assert_allclose(tcp_mjx, tcp_cpu, atol=5e-3)  # tcp position, metres
    np.testing.assert_allclose(mjx_traj[..., 6], cpu_traj[..., 6], atol=2e-3)  # gripper opening
    np.testing.assert_allclose(mjx_traj[..., 7:10], cpu_traj[..., 7:10], atol=2e-3)  # cube position
    assert np.abs(tcp_cpu[-1] - tcp_cpu[0]).max() > 0.02, "the actions must move the arm"


def _c_poses(model: mujoco.MjModel, qpos: np.ndarray):
    """MuJoCo C's body and camera poses at each row of qpos [B, nq] (float64 kinematics)."""
    d = mujoco.MjData(model)
    out = []
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(model, d)
        mujoco.mj_camlight(model, d)
        out.append((d.xpos.copy(), d.xquat.copy(), d.cam_xpos.copy(), d.cam_xmat.reshape(-1, 3, 3).copy()))
    return [np.stack(x) for x in zip(*out, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize(("physics", "impl"), PATHS, ids=PATH_IDS)
def test_frame_poses_are_the_state_observed(physics, impl):
    # Cartpole swings fast enough that poses one physics substep old miss by ~1e-2 (what MJX rendered before
    # poses were recomputed after the step); the check crosses an autoreset (episode_length=3).
    vec = _make("serl_gs/CartpoleBalance-v0", physics, impl, 2, episode_length=3)
    model = vec.task.mj_model
    vec.reset(seed=3)
    for i in range(4):
        vec.step(np.full((2, 1), 1.0 if i % 2 else -1.0, np.float32))
        qpos = np.asarray(vec.state.data.qpos, np.float64)
        if physics == "mujoco":
            qpos = vec._batch.physics.qpos  # the float64 state the C engine holds; obs are its float32 copy
        want = _c_poses(model, qpos)
        for name, got, ref in zip(("xpos", "xquat", "cam_xpos", "cam_xmat"), vec.body_poses(), want, strict=True):
            got = np.asarray(got).reshape(ref.shape)
            np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=f"{name} after step {i}")
    vec.close()


@pytest.mark.slow
def test_warp_capacity_holds_what_mujoco_c_needs_in_a_scripted_pick():
    # MJX-Warp drops contacts and constraint rows beyond its buffers; the bound must cover a real grasp.
    task = PandaPickCube()
    m = task.mj_model
    contacts, rows = warp_capacity(m)
    vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=4, physics="mujoco", array_backend="numpy")
    obs, _ = vec.reset(seed=0)
    policy = jax.jit(jax.vmap(scripted_action))
    d = mujoco.MjData(m)
    most_contacts = most_rows = 0
    for _ in range(70):
        obs, *_ = vec.step(np.asarray(policy(obs["state"], vec.state.info["step"])))
        for q, v in zip(vec._batch.physics.qpos, vec._batch.physics.qvel, strict=True):
            d.qpos[:], d.qvel[:] = q, v
            mujoco.mj_forward(m, d)
            most_contacts, most_rows = max(most_contacts, d.ncon), max(most_rows, d.nefc)
    vec.close()
    assert most_contacts >= 8, "the grasp must touch: cube on table and both pads"
    assert most_contacts <= contacts and most_rows <= rows, (most_contacts, contacts, most_rows, rows)
