"""Physics randomization per env (serl_gs.randomize.draw_physics) applied to the model each physics path steps.

Each env's values are a function of its episode key, so both paths apply the same numbers:
- MJX (JAX and Warp): the model is rebuilt inside the vmapped step from the env's key, with per-env fields, as
  MuJoCo Playground batches randomized models (there with `in_axes` over a batched model; here the fields are
  computed in the vmapped function, so nothing extra is stored in the state).
- MuJoCo C: one MjModel per env (mujoco.rollout takes a list), whose fields are set when the env starts an
  episode.
Fields: sliding friction of every geom (`geom_friction[:, 0]`), mass and inertia of the object bodies (those
with a free joint and their subtrees), actuator gain (`actuator_gainprm[:, 0]`) and, for position servos, the
matching stiffness term (`actuator_biasprm[:, 1]`), so a servo keeps its target. Action latency is applied by
the vector env (`latency`: the action applied is the one chosen `latency` steps before).
"""

from __future__ import annotations

import functools

import mujoco
import numpy as np


def object_bodies(mj_model: mujoco.MjModel) -> np.ndarray:
    """Bool mask [nbody] of the bodies that move freely (a free joint) and their subtrees: the objects."""
    m = mj_model
    free = {int(m.jnt_bodyid[j]) for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE}
    mask = np.zeros(m.nbody, bool)
    for b in range(1, m.nbody):
        a = b
        while a != 0 and not mask[b]:
            mask[b] = a in free
            a = int(m.body_parentid[a])
    return mask


def servo_actuators(mj_model: mujoco.MjModel) -> np.ndarray:
    """Bool mask [nu] of position servos (affine bias whose stiffness term is minus the gain)."""
    m = mj_model
    affine = m.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE
    return affine & np.isclose(m.actuator_biasprm[:, 1], -m.actuator_gainprm[:, 0])


def mjx_model_for(mjx_model, mj_model: mujoco.MjModel, values: dict):
    """`mjx_model` with one env's drawn values (traced inside the vmapped step)."""
    import jax.numpy as jnp

    objects = jnp.asarray(object_bodies(mj_model))
    servos = jnp.asarray(servo_actuators(mj_model))
    mass = jnp.where(objects, values["object_mass"], 1.0)
    gain = values["actuator_gain"]
    friction = mjx_model.geom_friction.at[:, 0].multiply(values["friction"])
    gainprm = mjx_model.actuator_gainprm.at[:, 0].multiply(gain)
    biasprm = mjx_model.actuator_biasprm.at[:, 1].multiply(jnp.where(servos, gain, 1.0))
    return mjx_model.replace(
        geom_friction=friction,
        body_mass=mjx_model.body_mass * mass,
        body_inertia=mjx_model.body_inertia * mass[:, None],
        actuator_gainprm=gainprm,
        actuator_biasprm=biasprm,
    )


def set_mujoco_model(model: mujoco.MjModel, base: mujoco.MjModel, values: dict) -> None:
    """Sets one env's MjModel (a copy of `base`) to the drawn values (numpy scalars), in place."""
    objects, servos = object_bodies(base), servo_actuators(base)
    f, mass, gain = (np.float32(values[k]) for k in ("friction", "object_mass", "actuator_gain"))
    model.geom_friction[:, 0] = base.geom_friction[:, 0] * f
    scale = np.where(objects, mass, np.float32(1.0))
    model.body_mass[:] = base.body_mass * scale
    model.body_inertia[:] = base.body_inertia * scale[:, None]
    model.actuator_gainprm[:, 0] = base.actuator_gainprm[:, 0] * gain
    model.actuator_biasprm[:, 1] = base.actuator_biasprm[:, 1] * np.where(servos, gain, np.float32(1.0))


def delay_actions(randomize, history, actions, keys):
    """Action latency, all envs at once: history [L + 1, B, A] of the last actions (newest first, zeros before
    an episode's first), the new actions [B, A], episode keys [B, 2] -> (applied actions [B, A], new history).
    Env b applies the action chosen `latency_b` steps ago."""
    return _delay_program(randomize)(history, actions, keys)


def clear_finished(history, done):
    """History rows of finished envs [B] zeroed: a new episode does not apply its predecessor's actions."""
    return _clear_program()(history, done)


@functools.lru_cache(maxsize=8)
def _delay_program(randomize):
    import jax
    import jax.numpy as jnp

    from serl_gs.randomize import draw_physics

    def delay(history, actions, keys):
        history = jnp.concatenate([actions[None], history[:-1]])
        latency = jax.vmap(lambda k: draw_physics(randomize, k)["latency"])(keys)
        return history[latency, jnp.arange(actions.shape[0])], history

    return jax.jit(delay)


@functools.cache
def _clear_program():
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda history, done: jnp.where(done[None, :, None], 0.0, history))
