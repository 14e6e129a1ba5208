"""Physics randomization per env (serl_gs.physics_randomize): MuJoCo C and MJX apply the same values, drawn
from each env's episode key; action latency delays each env's actions by its own number of steps."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401
from envs.panda_pick_cube import CUBE_QPOS
from serl_gs.mjx_env import MjxEnv
from serl_gs.physics_randomize import clear_finished, delay_actions, object_bodies
from serl_gs.randomize import RandomizeConfig, draw_physics

PHYSICS = RandomizeConfig(friction=0.3, object_mass=0.3, actuator_gain=0.3, latency_steps=2, object_size=0.15)


@pytest.mark.slow  # builds the Panda on MuJoCo C and an MJX model: ~10 s on 2 idle cores
def test_mujoco_c_and_mjx_models_take_the_same_per_env_values():
    env = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=3, physics="mujoco", randomize=PHYSICS)
    env.reset(seed=1)
    base, models = env.task.mj_model, env._batch.physics.models
    mjx = jax.vmap(MjxEnv(env.task, "jax", 3, PHYSICS).model_for)(env.state.info)  # the MJX path's models
    cube = int(np.flatnonzero(object_bodies(base))[0])
    assert cube == base.body("cube").id
    for field, pick in [
        ("geom_friction", lambda a: a[..., 0]),
        ("body_mass", lambda a: a),
        ("body_inertia", lambda a: a),
        ("actuator_gainprm", lambda a: a[..., 0]),
        ("actuator_biasprm", lambda a: a[..., 1]),
        ("geom_size", lambda a: a),
        ("geom_pos", lambda a: a),
        ("geom_rbound", lambda a: a),
        ("geom_aabb", lambda a: a),
        ("body_ipos", lambda a: a),
    ]:
        cpu = np.stack([pick(getattr(m, field)) for m in models])
        np.testing.assert_allclose(cpu, np.asarray(pick(getattr(mjx, field))), rtol=1e-6, err_msg=field)
        same = ("body_mass", "body_inertia", "geom_pos", "body_ipos")  # the cube's geom offset and centre are 0
        assert len({row.tobytes() for row in cpu}) == 3 or field in same, field
    masses = np.stack([m.body_mass for m in models])
    hand = base.body("hand").id
    assert len(set(masses[:, cube])) == 3 and (masses[:, hand] == base.body_mass[hand]).all()
    np.testing.assert_allclose(models[0].actuator_biasprm[:, 1], -models[0].actuator_gainprm[:, 0])  # servos hold
    # Object size: the cube's half-sizes, mass ~ s^3 (times the mass scale); nothing else changes size.
    values = jax.tree.map(np.asarray, jax.vmap(lambda k: draw_physics(PHYSICS, k))(env.state.info["rng"]))
    size, box = values["object_size"], base.geom("cube").id
    np.testing.assert_allclose(np.stack([m.geom_size[box] for m in models]), base.geom_size[box] * size[:, None],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(masses[:, cube], base.body_mass[cube] * values["object_mass"] * size**3, rtol=1e-6)
    assert all((np.delete(m.geom_size, box, 0) == np.delete(base.geom_size, box, 0)).all() for m in models)
    # Within an episode the values stay (an autoreset redraws them from the new episode's key).
    old = [m.actuator_gainprm[0, 0] for m in models]
    _, _, term, trunc, _ = env.step(np.zeros((3, 4), np.float32))
    assert not (term | trunc).any() and [m.actuator_gainprm[0, 0] for m in models] == old
    for _ in range(9):  # the cube, spawned at its unscaled half-height, settles on the table at its own
        env.step(np.zeros((3, 4), np.float32))
    z = np.asarray(env.state.data.qpos)[:, CUBE_QPOS][:, 2]
    np.testing.assert_allclose(z, base.geom_size[box, 2] * size, atol=5e-4)  # MuJoCo's soft contact: < 0.2 mm in
    env.close()


def test_values_repeat_from_the_same_key_and_stay_in_range():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(64))
    a = jax.vmap(lambda k: draw_physics(PHYSICS, k))(keys)
    b = jax.vmap(lambda k: draw_physics(PHYSICS, k))(keys)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert np.abs(np.asarray(a["friction"]) - 1).max() <= 0.3 and np.ptp(np.asarray(a["friction"])) > 0.3
    assert set(np.asarray(a["latency"]).tolist()) == {0, 1, 2}


def test_latency_applies_each_envs_action_from_its_own_number_of_steps_ago():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(8))
    latency = np.asarray(jax.vmap(lambda k: draw_physics(PHYSICS, k))(keys)["latency"])
    history = jnp.zeros((3, 8, 1))
    chosen, applied = [], []
    for t in range(5):
        actions = jnp.full((8, 1), float(t + 1))
        out, history = delay_actions(PHYSICS, history, actions, keys)
        chosen.append(t + 1)
        applied.append(np.asarray(out)[:, 0])
    for t in range(5):
        want = [chosen[t - k] if t - k >= 0 else 0.0 for k in latency]  # zeros before the episode's first action
        np.testing.assert_array_equal(applied[t], want)
    cleared = clear_finished(history, jnp.asarray([True] + [False] * 7))
    assert (np.asarray(cleared)[:, 0] == 0).all() and (np.asarray(cleared)[0, 1:] == 5).all()


def test_restore_with_randomized_physics_and_latency_is_bit_identical():
    env = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=3, physics="mujoco", array_backend="numpy",
                       episode_length=12, randomize=PHYSICS)  # fmt: skip
    env.reset(seed=2)
    actions = np.random.default_rng(0).uniform(-1, 1, (16, 3, 1)).astype(np.float32)
    for a in actions[:4]:
        env.step(a)
    blob = env.get_state()
    want = [env.step(a)[0]["state"] for a in actions[4:]]
    env.set_state(blob)
    got = [env.step(a)[0]["state"] for a in actions[4:]]
    np.testing.assert_array_equal(np.stack(got), np.stack(want))
    env.close()
