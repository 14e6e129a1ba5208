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

Object size s: every geom of an object body is scaled about its body's origin (`geom_size`, its offset
`geom_pos`, and the bounds broad phases read, `geom_rbound`, `geom_aabb`), the body's centre of mass `body_ipos`
with it, its mass by s^3 and inertia by s^5 (uniform density: m ~ L^3, I ~ m L^2), on top of the mass scale.
Sub-bodies of an object keep their joint offsets (`body_pos`): each body scales about its own origin, as the
renderer scales its Gaussians. Mesh geoms cannot be scaled per env (their vertices are shared by all envs), so
objects with meshes are refused (`check_sizable`). The task's spawn height is not changed: a grown object starts
up to s - 1 of its half-height inside the table and is pushed out in the first steps, a shrunk one drops as far.
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


def object_geoms(mj_model: mujoco.MjModel) -> np.ndarray:
    """Bool mask [ngeom] of the geoms of object bodies: what object_size scales."""
    return object_bodies(mj_model)[mj_model.geom_bodyid]


SIZABLE_GEOMS = frozenset(int(t) for t in (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE,
                                           mujoco.mjtGeom.mjGEOM_ELLIPSOID, mujoco.mjtGeom.mjGEOM_CYLINDER,
                                           mujoco.mjtGeom.mjGEOM_BOX))  # fmt: skip


def check_sizable(mj_model: mujoco.MjModel) -> None:
    """Raises ValueError if object_size cannot scale the model's objects (a mesh or other non-primitive geom)."""
    m = mj_model
    for g in np.flatnonzero(object_geoms(m)):
        if int(m.geom_type[g]) not in SIZABLE_GEOMS:
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, int(g)) or f"#{g}"
            kind = mujoco.mjtGeom(int(m.geom_type[g])).name
            raise ValueError(f"object_size randomization scales primitive geoms only; object geom {name} is {kind}")


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
    s = values["object_size"]
    mass = jnp.where(objects, values["object_mass"] * s**3, 1.0)
    inertia = jnp.where(objects, values["object_mass"] * s**5, 1.0)
    length = jnp.where(objects, s, 1.0)
    geom_length = jnp.where(jnp.asarray(object_geoms(mj_model)), s, 1.0)
    gain = values["actuator_gain"]
    friction = mjx_model.geom_friction.at[:, 0].multiply(values["friction"])
    gainprm = mjx_model.actuator_gainprm.at[:, 0].multiply(gain)
    biasprm = mjx_model.actuator_biasprm.at[:, 1].multiply(jnp.where(servos, gain, 1.0))
    per_geom = lambda x: x * geom_length.reshape(-1, *(1,) * (x.ndim - 1))  # noqa: E731  (aabb: [n, 6] or [n, 2, 3])
    return mjx_model.replace(
        geom_friction=friction,
        geom_size=per_geom(mjx_model.geom_size),
        geom_pos=per_geom(mjx_model.geom_pos),
        geom_rbound=per_geom(mjx_model.geom_rbound),
        geom_aabb=per_geom(mjx_model.geom_aabb),
        body_ipos=mjx_model.body_ipos * length[:, None],
        body_mass=mjx_model.body_mass * mass,
        body_inertia=mjx_model.body_inertia * inertia[:, None],
        actuator_gainprm=gainprm,
        actuator_biasprm=biasprm,
    )


def set_mujoco_model(model: mujoco.MjModel, base: mujoco.MjModel, values: dict) -> None:
    """Sets one env's MjModel (a copy of `base`) to the drawn values (numpy scalars), in place."""
    objects, servos, geoms = object_bodies(base), servo_actuators(base), object_geoms(base)
    f, mass, gain, s = (np.float32(values[k]) for k in ("friction", "object_mass", "actuator_gain", "object_size"))
    model.geom_friction[:, 0] = base.geom_friction[:, 0] * f
    one = np.float32(1.0)
    geom_length = np.where(geoms, s, one)
    model.geom_size[:] = base.geom_size * geom_length[:, None]
    model.geom_pos[:] = base.geom_pos * geom_length[:, None]
    model.geom_rbound[:] = base.geom_rbound * geom_length
    model.geom_aabb[:] = base.geom_aabb * geom_length[:, None]
    model.body_ipos[:] = base.body_ipos * np.where(objects, s, one)[:, None]
    model.body_mass[:] = base.body_mass * np.where(objects, mass * s**3, one)
    model.body_inertia[:] = base.body_inertia * np.where(objects, mass * s**5, one)[:, None]
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
