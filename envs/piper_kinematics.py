"""AgileX Piper kinematics in JAX: forward kinematics from the published modified-DH table (piper_sdk's), and a
damped least-squares IK that turns a tool position and a downward orientation with a yaw into joint targets.

Frames are the arm's own: the origin at the base of joint 1 (where the arm is bolted to the mobile base), z up.
Like `envs.panda_kinematics`, this is pure JAX on joint positions only, so the controller runs unchanged on
both physics paths. `envs/piper_mobile.py` builds the MJCF from the same table; tests/test_envs_piper_mobile.py
checks that this FK matches MuJoCo's `tcp` site.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from envs.panda_kinematics import damped_ik, rot_x, rot_z

# Modified (Craig) DH parameters of joints 1..6: (a_{i-1}, d_i, alpha_{i-1}, theta offset_i), metres and
# radians (piper_sdk's table: a = 0, 0, 285.03, -21.98, 0, 0 mm; d = 123, 0, 0, 250.75, 0, 91 mm;
# offsets -172.22 deg and -102.78 deg on joints 2 and 3). Joint angle 0 is the arm's folded rest pose.
PIPER_DH = (
    (0.0, 0.123, 0.0, 0.0),
    (0.0, 0.0, -math.pi / 2, math.radians(-172.22)),
    (0.28503, 0.0, 0.0, math.radians(-102.78)),
    (-0.021984, 0.25075, math.pi / 2, 0.0),
    (0.0, 0.0, -math.pi / 2, 0.0),
    (0.0, 0.091, math.pi / 2, 0.0),
)
ARM_DOF = 6
# The flange (DH frame 6) to the point between the finger pads, along the tool axis (the primitive gripper of
# envs/piper_mobile.py; the real Piper gripper is about as long).
TCP_OFFSET = 0.12
# piper_description's joint limits (radians).
JOINT_LOWER = (-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944)
JOINT_UPPER = (2.618, 3.14, 0.0, 1.745, 1.22, 2.0944)
# The task's start pose: the hand 25 cm ahead of joint 1's base and 10 cm above it, pointing down, jaws closing
# along y (found with `solve_ik`; tests check it). Pointing straight down, the hand reaches 20-40 cm ahead at
# heights from -5 to +10 cm (joint 5 stops at 70 deg above that), so the arm is mounted just above the table.
HOME_QPOS = (0.0, 1.4965, -0.9284, 0.0, 1.0899, 0.0)


def tcp_pose(q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pose of the tool centre point in the arm's frame for joints q [6]: (position [3], rotation [3, 3]).
    The rotation's z column is the tool axis (from the flange towards the fingertips), its y column the jaws'
    closing direction."""
    rot = jnp.eye(3)
    pos = jnp.zeros(3)
    for (a, d, alpha, offset), qi in zip(PIPER_DH, q, strict=True):
        # T_i = RotX(alpha) TransX(a) RotZ(q + offset) TransZ(d); RotZ and TransZ commute.
        rot = rot @ rot_x(alpha)
        pos = pos + rot @ jnp.array([a, 0.0, 0.0])
        rot = rot @ rot_z(qi + offset)
        pos = pos + rot[:, 2] * d
    return pos + rot[:, 2] * TCP_OFFSET, rot


def tcp_position(q: jax.Array) -> jax.Array:
    """TCP position [3] in the arm's frame for joints q [6]."""
    return tcp_pose(q)[0]


def tcp_velocity(q: jax.Array, qdot: jax.Array) -> jax.Array:
    """Linear TCP velocity [3] in the arm's frame = J_pos(q) qdot (forward-mode JVP)."""
    return jax.jvp(tcp_position, (q,), (qdot,))[1]


def down_rotation(yaw: jax.Array) -> jax.Array:
    """The tool pointing straight down (z column -z), its jaws closing along (-sin yaw, cos yaw, 0)."""
    down = jnp.diag(jnp.array([-1.0, 1.0, -1.0]))  # RotY(pi): y stays, x and z flip
    return rot_z(yaw) @ down


def solve_ik(
    q: jax.Array,  # [6] current joint positions, the starting guess
    target_pos: jax.Array,  # [3] in the arm's frame
    target_rot: jax.Array,  # [3, 3]
    *,
    iterations: int = 3,
    damping: float = 1e-3,
    rot_weight: float = 0.3,
    posture_weight: float = 0.01,
) -> jax.Array:
    """Joint targets [6] that put the TCP at target_pos with orientation target_rot.

    Damped Gauss-Newton on [position; weighted rotation; weighted posture], started at the current joints and
    clipped to the joint limits. Six joints for six constraints: the small posture term only picks among the
    elbow-up/down and wrist-flip solutions (the one near home) and steadies the steps near singularities.
    """
    return damped_ik(
        tcp_pose, q, target_pos, target_rot, HOME_QPOS, JOINT_LOWER, JOINT_UPPER,
        iterations=iterations, damping=damping, rot_weight=rot_weight, posture_weight=posture_weight,
    )  # fmt: skip
