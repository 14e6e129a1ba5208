"""The env contract (DESIGN.md, "Env"): registry, spaces, jit-once, determinism, rewards, autoreset, errors.

CPU MuJoCo is the physics path on machines without a GPU; the MJX path is exercised on the cheap cartpole
here and compared with the CPU path in tests/test_physics_paths.py.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import envs
from envs import panda_kinematics as kin
from envs.cartpole import CartpoleBalance, tolerance_gaussian
from envs.panda_pick_cube import CUBE_HALF, PandaPickCube, scripted_action
from serl_gs.mjx_env import MjxEnv

ALL_IDS = [f"serl_gs/{name}" for name in envs.task_names()]


def _count_traces(monkeypatch, task_cls) -> dict[str, int]:
    """Counts how often the task's maths is traced: Python code inside jit runs once per compilation."""
    counts = {"control": 0, "reward": 0}
    for name in counts:
        original = getattr(task_cls, name)

        def counted(self, *args, _name=name, _original=original):
            counts[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(task_cls, name, counted)
    return counts


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_rollout_matches_spaces_compiles_once_and_stays_finite(env_id, monkeypatch):
    task_cls = envs.registry.TASKS[env_id.split("/")[1]][0]
    counts = _count_traces(monkeypatch, task_cls)
    vec = gym.make_vec(env_id, num_envs=4, physics="mujoco", episode_length=5)
    obs, _ = vec.reset(seed=1)
    assert vec.observation_space.contains(jax.tree.map(np.asarray, obs))
    rng = np.random.default_rng(0)
    traced_after_first_step = None
    for i in range(12):  # crosses two autoresets
        obs, reward, terminated, truncated, infos = vec.step(vec.action_space.sample())
        if i == 0:
            traced_after_first_step = dict(counts)
        for key, space in vec.single_observation_space.items():
            assert obs[key].shape == (4, *space.shape) and obs[key].dtype == space.dtype
            assert np.isfinite(np.asarray(obs[key])).all()
        assert reward.shape == (4,) and reward.dtype == jnp.float32 and np.isfinite(np.asarray(reward)).all()
        assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
        vec.action_space.seed(int(rng.integers(1 << 30)))
    assert counts == traced_after_first_step, "the step was re-traced after the first call"
    vec.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_single_env_passes_gymnasium_check_env(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, physics="mujoco")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.slow
def test_same_seed_same_trajectory_and_env_indices_differ():
    def rollout(seed):
        vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=3, physics="mujoco")
        obs, _ = vec.reset(seed=seed)
        first = np.asarray(obs["state"])
        actions = np.random.default_rng(7).uniform(-1, 1, (10, 3, 4)).astype(np.float32)
        for a in actions:
            obs, *_ = vec.step(a)
        vec.close()
        return first, np.asarray(obs["state"])

    first_a, last_a = rollout(3)
    first_b, last_b = rollout(3)
    np.testing.assert_array_equal(first_a, first_b)
    np.testing.assert_array_equal(last_a, last_b)
    cubes = first_a[:, 7:10]
    assert len({tuple(c) for c in cubes.round(6)}) == 3, "env indices must start from different cube positions"
    first_c, _ = rollout(4)
    assert not np.allclose(first_a, first_c)


@pytest.mark.slow
def test_mjx_env_is_pure_and_deterministic():
    env = MjxEnv(CartpoleBalance())
    reset, step = jax.jit(env.reset), jax.jit(env.step)  # eager MJX ops compile one by one: jit them once
    s1 = step(reset(jax.random.PRNGKey(0)), jnp.array([0.3]))
    s2 = step(reset(jax.random.PRNGKey(0)), jnp.array([0.3]))
    np.testing.assert_array_equal(np.asarray(s1.data.qpos), np.asarray(s2.data.qpos))
    s3 = step(reset(jax.random.PRNGKey(1)), jnp.array([0.3]))
    assert not np.array_equal(np.asarray(s1.data.qpos), np.asarray(s3.data.qpos))


def test_panda_reward_and_success_match_the_formula_on_hand_built_states():
    task = PandaPickCube()
    m = task.mj_model
    d = mujoco.MjData(m)
    info = {"z_init": jnp.float32(CUBE_HALF), "step": jnp.int32(1)}
    rng = np.random.default_rng(0)
    for lift in [0.0, 0.05, 0.099, 0.101, 0.15, 0.3]:
        qpos = m.key_qpos[0].copy()
        qpos[:7] += rng.uniform(-0.3, 0.3, 7)
        qpos[9:12] = [0.4 + rng.uniform(-0.1, 0.1), rng.uniform(-0.2, 0.2), CUBE_HALF + lift]
        d.qpos[:] = qpos
        mujoco.mj_kinematics(m, d)
        tcp = d.site_xpos[m.site("tcp").id]
        dist = np.linalg.norm(qpos[9:12] - tcp)
        expected = 0.3 * np.exp(-20 * dist) + 0.7 * np.clip(lift / 0.2, 0, 1)
        reward, terminated, metrics = task.reward(jnp.asarray(qpos, jnp.float32), jnp.zeros(m.nv), info, jnp.zeros(4))
        np.testing.assert_allclose(float(reward), expected, rtol=1e-4, atol=1e-6)
        assert float(metrics["success"]) == float(lift >= 0.1)
        assert not bool(terminated)


def test_cartpole_reward_matches_dm_control_formula():
    task = CartpoleBalance()
    info = {"step": jnp.int32(1)}
    upright_still, *_ = task.reward(jnp.zeros(2), jnp.zeros(2), info, jnp.zeros(1))
    np.testing.assert_allclose(float(upright_still), 1.0, rtol=1e-6)
    cart, angle, ang_vel, u = 0.5, 0.4, 1.5, 0.5
    r, *_ = task.reward(jnp.array([cart, angle]), jnp.array([0.0, ang_vel]), info, jnp.array([u]))
    upright = (np.cos(angle) + 1) / 2
    centered = (1 + np.exp(-0.5 * (cart / 2 * np.sqrt(-2 * np.log(0.1))) ** 2)) / 2
    small_control = (4 + (1 - u**2)) / 5
    small_velocity = (1 + float(tolerance_gaussian(jnp.float32(ang_vel), 5.0))) / 2
    np.testing.assert_allclose(float(r), upright * centered * small_control * small_velocity, rtol=1e-5)
    # dm_control's gaussian tolerance is 0.1 at the margin
    np.testing.assert_allclose(float(tolerance_gaussian(jnp.float32(5.0), 5.0)), 0.1, rtol=1e-5)


@pytest.mark.slow
def test_autoreset_returns_final_obs_and_starts_a_fresh_episode():
    vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=2, physics="mujoco", episode_length=3)
    obs0, _ = vec.reset(seed=0)
    home_tcp = np.asarray(obs0["state"][0, :3])
    push = np.tile(np.array([1.0, 0.0, -1.0, 0.0], np.float32), (2, 1))
    for _ in range(2):
        obs, _, _, truncated, infos = vec.step(push)
        assert not np.asarray(truncated).any() and not np.asarray(infos["_final_obs"]).any()
    obs, _, terminated, truncated, infos = vec.step(push)
    assert np.asarray(truncated).all() and not np.asarray(terminated).any()
    assert np.asarray(infos["_final_obs"]).all()
    final_tcp = np.asarray(infos["final_obs"]["state"][:, :3])
    new_tcp = np.asarray(obs["state"][:, :3])
    assert (final_tcp[:, 0] > home_tcp[0] + 0.05).all(), "the final obs shows where the arm went"
    np.testing.assert_allclose(new_tcp, np.tile(home_tcp, (2, 1)), atol=1e-4)  # fresh episode: home pose
    assert not np.allclose(np.asarray(obs["state"][:, 7:10]), np.asarray(obs0["state"][:, 7:10]))
    np.testing.assert_array_equal(np.asarray(vec.state.info["step"]), [0, 0])
    vec.close()


def test_forward_kinematics_matches_mujoco_tcp_site():
    m = PandaPickCube().mj_model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = np.array(kin.HOME_QPOS) + rng.uniform(-0.6, 0.6, 7)
        d.qpos[:7] = q
        mujoco.mj_kinematics(m, d)
        pos, rot = kin.tcp_pose(jnp.asarray(q))
        np.testing.assert_allclose(np.asarray(pos), d.site_xpos[0], atol=1e-5)
        np.testing.assert_allclose(np.asarray(rot), d.site_xmat[0].reshape(3, 3), atol=1e-5)


@pytest.mark.slow
def test_scripted_pick_succeeds_in_at_least_80_percent_of_32_episodes():
    vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=32, physics="mujoco")
    obs, _ = vec.reset(seed=2026)
    policy = jax.jit(jax.vmap(scripted_action))
    success = np.zeros(32)
    for _ in range(100):
        obs, _, _, truncated, infos = vec.step(policy(obs["state"], vec.state.info["step"]))
        success = np.maximum(success, np.asarray(infos["success"]))
    assert np.asarray(truncated).all()
    assert success.mean() >= 0.8, f"scripted pick succeeded in {success.mean():.0%} of episodes"
    vec.close()


def test_bad_arguments_raise_errors_that_name_the_value():
    with pytest.raises(gym.error.Error, match="NoSuchTask"):
        gym.make_vec("serl_gs/NoSuchTask-v0", num_envs=2)
    with pytest.raises(ValueError, match="num_envs must be a positive int, got 0"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=0)
    with pytest.raises(ValueError, match="physics must be one of .* got 'gpu'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, physics="gpu")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['episode_lenght'\]"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, episode_lenght=3)
    with pytest.raises(ValueError, match="unknown task 'Nope'"):
        envs.make_task("Nope")
    vec = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, physics="mujoco")
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape \(2, 3\), expected \(2, 1\)"):
        vec.step(np.zeros((2, 3), np.float32))
    vec.close()


@pytest.mark.slow
def test_pixel_observations_and_the_true_final_frame():
    kwargs = dict(num_envs=2, physics="mujoco", obs_mode="pixels", render_backend="reference", image_size=24)
    short = gym.make_vec("serl_gs/PandaPickCube-v0", episode_length=3, **kwargs)
    long = gym.make_vec("serl_gs/PandaPickCube-v0", episode_length=100, **kwargs)
    assert set(short.single_observation_space) == {"state", "pixels/front", "pixels/wrist"}
    assert short.single_observation_space["state"].shape == (7,), "with pixels the cube is not in the state"
    obs_s, _ = short.reset(seed=5)
    obs_l, _ = long.reset(seed=5)
    assert short.observation_space.contains(jax.tree.map(np.asarray, obs_s))
    first_wrist = np.asarray(obs_s["pixels/wrist"])
    push = np.tile(np.array([1.0, 0.0, -1.0, 1.0], np.float32), (2, 1))
    for _ in range(3):
        obs_s, _, _, truncated, infos = short.step(push)
        obs_l, *_ = long.step(push)
    assert np.asarray(truncated).all()
    for cam in ("pixels/front", "pixels/wrist"):
        # Same seed and actions: the short env's true final frame is the long env's current frame.
        np.testing.assert_array_equal(np.asarray(infos["final_obs"][cam]), np.asarray(obs_l[cam]))
    moved = np.abs(np.asarray(infos["final_obs"]["pixels/wrist"], np.int32) - first_wrist).mean()
    assert moved > 2.0, "the hand moved, so the final wrist frame differs from the first"
    assert obs_s["pixels/front"].dtype == jnp.uint8 and obs_s["pixels/front"].shape == (2, 24, 24, 3)
    short.close()
    long.close()


@pytest.mark.slow
def test_mjx_pixel_path_renders_every_camera():
    vec = gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=2, physics="mjx", obs_mode="pixels", image_size=16, episode_length=2
    )
    obs, _ = vec.reset(seed=0)
    for _ in range(2):
        obs, _, _, truncated, infos = vec.step(np.ones((2, 1), np.float32))
    assert np.asarray(truncated).all()
    assert isinstance(obs["pixels/fixed"], jax.Array) and obs["pixels/fixed"].shape == (2, 16, 16, 3)
    assert np.asarray(obs["pixels/fixed"]).std() > 1.0, "the image shows something"
    assert not np.array_equal(np.asarray(infos["final_obs"]["pixels/fixed"]), np.asarray(obs["pixels/fixed"]))
    vec.close()
