"""Franka Panda kinematics in JAX: forward kinematics from the published modified-DH table, and a damped
least-squares IK that turns a Cartesian target into joint position targets.

The controller only needs joint positions, so it runs unchanged on both physics paths (MJX and CPU MuJoCo):
it is pure JAX and never reads simulator internals. `envs/assets/panda_pick_cube.xml` is built from the same
table; tests/test_envs.py checks that this FK matches MuJoCo's `tcp` site.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Modified (Craig) DH parameters of joints 1..7: (a_{i-1}, d_i, alpha_{i-1}), metres and radians.
PANDA_DH = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
)
FLANGE_D = 0.107  # flange offset along joint 7's axis
HAND_YAW = -math.pi / 4  # the hand is mounted rotated -45 deg about the flange axis
TCP_OFFSET = 0.1034  # flange to the point between the fingertips

JOINT_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
JOINT_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
HOME_QPOS = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)


def rot_x(angle: float) -> jax.Array:
    """Rotation matrix [3, 3] about x (a constant angle: DH twists)."""
    c, s = math.cos(angle), math.sin(angle)
    return jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(angle: jax.Array) -> jax.Array:
    """Rotation matrix [3, 3] about z (a traced angle: joints)."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]), jnp.stack([zero, zero, one])])


def tcp_pose(q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """World pose of the tool centre point for arm joints q [7]: (position [3], rotation matrix [3, 3]).

    The arm base sits at the world origin, as in the MJCF.
    """
    rot = jnp.eye(3)
    pos = jnp.zeros(3)
    for (a, d, alpha), qi in zip(PANDA_DH, q, strict=True):
        # T_i = RotX(alpha) TransX(a) RotZ(q) TransZ(d); RotZ and TransZ commute.
        rot = rot @ rot_x(alpha)
        pos = pos + rot @ jnp.array([a, 0.0, 0.0])
        rot = rot @ rot_z(qi)
        pos = pos + rot[:, 2] * d
    pos = pos + rot[:, 2] * (FLANGE_D + TCP_OFFSET)
    rot = rot @ rot_z(jnp.asarray(HAND_YAW))
    return pos, rot


def tcp_position(q: jax.Array) -> jax.Array:
    """TCP position [3] for arm joints q [7]."""
    return tcp_pose(q)[0]


def tcp_velocity(q: jax.Array, qdot: jax.Array) -> jax.Array:
    """Linear TCP velocity [3] = J_pos(q) qdot, via a forward-mode JVP (no Jacobian formed)."""
    return jax.jvp(tcp_position, (q,), (qdot,))[1]


def solve_ik(
    q: jax.Array,  # [7] current joint positions, the starting guess
    target_pos: jax.Array,  # [3]
    target_rot: jax.Array,  # [3, 3]
    *,
    iterations: int = 3,
    damping: float = 1e-3,
    rot_weight: float = 0.3,
    posture_weight: float = 0.02,
) -> jax.Array:
    """Joint targets [7] that put the TCP at target_pos with orientation target_rot.

    Damped Gauss-Newton on the residual [position; weighted rotation; weighted posture], started at the
    current joints. The small posture term pulls the redundant 7th DoF towards home so it does not drift.
    """
    return damped_ik(
        tcp_pose, q, target_pos, target_rot, HOME_QPOS, JOINT_LOWER, JOINT_UPPER,
        iterations=iterations, damping=damping, rot_weight=rot_weight, posture_weight=posture_weight,
    )  # fmt: skip


def damped_ik(
    pose_fn, q, target_pos, target_rot, home, lower, upper, *, iterations, damping, rot_weight, posture_weight
) -> jax.Array:
    """Damped Gauss-Newton from q on the residual [pose_fn's position - target; weighted rotation error;
    weighted posture (q - home)], each step clipped to [lower, upper]; any arm's FK (`pose_fn(q) -> (pos, rot)`)."""
    home, lower, upper = jnp.asarray(home), jnp.asarray(lower), jnp.asarray(upper)

    def residual(qq):
        pos, rot = pose_fn(qq)
        return jnp.concatenate(
            [pos - target_pos, rot_weight * (rot - target_rot).ravel(), posture_weight * (qq - home)]
        )

    def gauss_newton(_, qq):
        r = residual(qq)
        jac = jax.jacfwd(residual)(qq)  # [3 + 9 + dof, dof]
        dq = jnp.linalg.solve(jac.T @ jac + damping * jnp.eye(qq.shape[0]), jac.T @ r)
        return jnp.clip(qq - dq, lower, upper)

    return jax.lax.fori_loop(0, iterations, gauss_newton, q)
