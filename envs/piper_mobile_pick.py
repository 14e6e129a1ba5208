"""PiperMobilePick: drive a mobile Piper to the table and pick up the cube (seed 003's PiperMobileRobot-v0, in
serl_gs's task form). The model is `envs.piper_mobile`'s: a 6-DoF Piper arm with a parallel gripper on a base
that slides in x and y and turns in yaw. Each episode the base starts 1 to 1.3 m from the table's edge, turned
up to +-0.5 rad, so the cube (on the table, turned up to +-45 deg) is out of the arm's reach: the base must drive.

Action (7,) in [-1, 1], at 25 Hz (10 physics steps of 4 ms):
  0  base forward speed * `base_speed` (m/s, along the base's heading)
  1  base yaw rate * `yaw_rate` (rad/s)
  2-4  end-effector target delta (dx, dy, dz) * `action_scale` metres, in the arm's frame (joint 1's base, which
       moves and turns with the base), accumulated into a target clipped to the workspace box (as PandaPickCube's)
  5  wrist: delta of the gripper's yaw about the vertical * `wrist_scale` rad, clipped to +-90 deg
  6  gripper: -1 open ... +1 closed
The base follows the speeds through velocity actuators; the arm tracks the target with the gripper pointing
straight down at the wrist yaw through damped least-squares IK (`envs.piper_kinematics`) into joint servos.

State observation (15, + 3 with `cube_in_state`): base x, y, cos yaw, sin yaw (4); base forward, sideways and yaw
velocity (3); tcp position and velocity in the arm's frame (3 + 3); gripper opening (1); wrist yaw target (1);
and, only when the policy does not see pixels (`cube_in_state`, False by default with pixels), the cube's
position in the arm's frame (3). Cameras: `base` (on a mast at the back right of the base) and `wrist`.

Reward (SERL-style dense, in [0, 1]): 0.2 r_base + 0.3 r_reach + 0.5 r_lift with
  r_base  = exp(-3 max(d_xy - reach_radius, 0)), d_xy the cube's horizontal distance from joint 1 (drive up),
  r_reach = exp(-20 |p_cube - p_tcp|) (reach it), r_lift = clip(lift / lift_height, 0, 1) (lift it).
`success`: the cube is lifted at least `success_height` (6 cm) above the table.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from envs import piper_kinematics as kin
from envs.piper_mobile import ARM_MOUNT, BASE_HEIGHT, CUBE_HALF, FINGER_OPEN, TABLE_FRONT, TABLE_TOP, piper_mobile_model
from serl_gs.mjx_env import Info, Obs, Task

BASE_QPOS = slice(0, 3)  # x, y, yaw
ARM_QPOS = slice(3, 9)
FINGER_QPOS = slice(9, 11)
CUBE_QPOS = slice(11, 14)  # the cube freejoint's position, then its wxyz quaternion (14:18)
CUBE_QUAT = slice(14, 18)
ARM_QVEL = slice(3, 9)
CUBE_Z_ON_TABLE = TABLE_TOP + CUBE_HALF


@dataclasses.dataclass(frozen=True)
class PiperMobilePickConfig:
    episode_length: int = 150  # control steps (25 Hz: 6 s): the scripted solver drives ~2.5 s, picks ~1 s
    n_substeps: int = 10  # physics steps of 4 ms per control step
    base_speed: float = 0.5  # m/s at action 1
    yaw_rate: float = 1.0  # rad/s at action 1
    action_scale: float = 0.02  # metres of end-effector target motion per unit action per step
    wrist_scale: float = 0.15  # radians of wrist yaw per unit action per step
    # The end-effector target's box in the arm's frame (the table top is at z = -0.05 there).
    workspace_low: tuple[float, float, float] = (0.15, -0.25, -0.06)
    workspace_high: tuple[float, float, float] = (0.42, 0.25, 0.15)
    base_x_range: tuple[float, float] = (-0.45, -0.25)  # where the base starts (the table's edge is at 0.8)
    base_y_range: tuple[float, float] = (-0.25, 0.25)
    base_yaw_range: tuple[float, float] = (-0.5, 0.5)
    cube_x_range: tuple[float, float] = (TABLE_FRONT + 0.08, TABLE_FRONT + 0.2)
    cube_y_range: tuple[float, float] = (-0.25, 0.25)
    cube_yaw_range: tuple[float, float] = (-math.pi / 4, math.pi / 4)
    reach_radius: float = 0.4  # metres from joint 1 (horizontally) within which the base term is full
    success_height: float = 0.06  # lift above the table that counts as success
    lift_height: float = 0.1  # lift at which the lift term saturates
    cube_in_state: bool = True  # False when the policy sees pixels and must find the cube itself
    ik_iterations: int = 3
    action_repeat: int = 1  # control steps per env step

    def __post_init__(self):
        if self.episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {self.episode_length}")
        if not isinstance(self.action_repeat, int) or self.action_repeat < 1:
            raise ValueError(f"action_repeat must be an int >= 1, got {self.action_repeat!r}")
        if self.n_substeps <= 0:
            raise ValueError(f"n_substeps must be positive, got {self.n_substeps}")
        for name in ("base_x_range", "base_y_range", "base_yaw_range", "cube_x_range", "cube_y_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)}")


def arm_to_world(base: jax.Array, p: jax.Array) -> jax.Array:
    """A point [3] in the arm's frame -> the world, for base pose (x, y, yaw)."""
    return jnp.concatenate([base[:2], jnp.zeros(1)]) + kin.rot_z(base[2]) @ (jnp.asarray(ARM_MOUNT) + p)


def world_to_arm(base: jax.Array, p: jax.Array) -> jax.Array:
    """A world point [3] -> the arm's frame (joint 1's base on the base at pose (x, y, yaw))."""
    return kin.rot_z(base[2]).T @ (p - jnp.concatenate([base[:2], jnp.zeros(1)])) - jnp.asarray(ARM_MOUNT)


def cube_yaw(quat: jax.Array) -> jax.Array:
    """The yaw of a cube's wxyz quaternion (its rotation about the vertical; it rests flat)."""
    w, x, y, z = quat
    return jnp.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


class PiperMobilePick(Task):
    can_terminate = False  # episodes end by the time limit only

    def __init__(self, config: PiperMobilePickConfig | None = None):
        self.config = config = config or PiperMobilePickConfig()
        self.mj_model = piper_mobile_model()
        self.n_substeps = config.n_substeps
        self.episode_length = config.episode_length
        self.action_size = 7
        self.action_repeat = config.action_repeat
        self._home_q = jnp.asarray(kin.HOME_QPOS, jnp.float32)
        self._home_tcp = jax.jit(kin.tcp_position)(self._home_q)  # one compiled program: op by op is ~50 tiny ones
        self._ws_low = jnp.asarray(config.workspace_low, jnp.float32)
        self._ws_high = jnp.asarray(config.workspace_high, jnp.float32)

    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        c = self.config
        low = jnp.array([c.base_x_range[0], c.base_y_range[0], c.base_yaw_range[0],
                         c.cube_x_range[0], c.cube_y_range[0], c.cube_yaw_range[0]])  # fmt: skip
        high = jnp.array([c.base_x_range[1], c.base_y_range[1], c.base_yaw_range[1],
                          c.cube_x_range[1], c.cube_y_range[1], c.cube_yaw_range[1]])  # fmt: skip
        draw = jax.random.uniform(rng, (6,), minval=low, maxval=high)
        base, cube_xy, yaw = draw[:3], draw[3:5], draw[5]
        cube_quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        fingers = jnp.full((2,), FINGER_OPEN)
        cube = jnp.concatenate([cube_xy, jnp.full((1,), CUBE_Z_ON_TABLE), cube_quat])
        qpos = jnp.concatenate([base, self._home_q, fingers, cube]).astype(jnp.float32)
        qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        ctrl = jnp.concatenate([jnp.zeros(3), self._home_q, fingers]).astype(jnp.float32)
        info = {"target": self._home_tcp.astype(jnp.float32), "wrist": jnp.zeros((), jnp.float32)}
        return qpos, qvel, ctrl, info

    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        c = self.config
        action = jnp.clip(action, -1.0, 1.0)
        yaw = qpos[2]
        speed = c.base_speed * action[0]
        base = jnp.stack([speed * jnp.cos(yaw), speed * jnp.sin(yaw), c.yaw_rate * action[1]])
        target = jnp.clip(info["target"] + c.action_scale * action[2:5], self._ws_low, self._ws_high)
        wrist = jnp.clip(info["wrist"] + c.wrist_scale * action[5], -math.pi / 2, math.pi / 2)
        q_arm = kin.solve_ik(qpos[ARM_QPOS], target, kin.down_rotation(wrist), iterations=c.ik_iterations)
        finger = FINGER_OPEN * (1.0 - action[6]) / 2.0  # -1: open, +1: closed
        ctrl = jnp.concatenate([base, q_arm, jnp.stack([finger, finger])])
        return ctrl, {**info, "target": target, "wrist": wrist}

    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        base, yaw = qpos[BASE_QPOS], qpos[2]
        base_velocity = jnp.concatenate([kin.rot_z(yaw)[:2, :2].T @ qvel[:2], qvel[2:3]])  # forward, sideways, yaw
        q, qd = qpos[ARM_QPOS], qvel[ARM_QVEL]
        parts = [
            base[:2], jnp.stack([jnp.cos(yaw), jnp.sin(yaw)]), base_velocity,
            kin.tcp_position(q), kin.tcp_velocity(q, qd), (qpos[9] + qpos[10])[None], info["wrist"][None],
        ]  # fmt: skip
        if self.config.cube_in_state:
            parts.append(world_to_arm(base, qpos[CUBE_QPOS]))
        return {"state": jnp.concatenate(parts).astype(jnp.float32)}

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        c = self.config
        base, cube = qpos[BASE_QPOS], qpos[CUBE_QPOS]
        tcp = arm_to_world(base, kin.tcp_position(qpos[ARM_QPOS]))
        mount = arm_to_world(base, jnp.zeros(3))
        lifted = cube[2] - CUBE_Z_ON_TABLE
        r_base = jnp.exp(-3.0 * jnp.maximum(jnp.linalg.norm(cube[:2] - mount[:2]) - c.reach_radius, 0.0))
        r_reach = jnp.exp(-20.0 * jnp.linalg.norm(cube - tcp))
        r_lift = jnp.clip(lifted / c.lift_height, 0.0, 1.0)
        reward = 0.2 * r_base + 0.3 * r_reach + 0.5 * r_lift
        success = (lifted >= c.success_height).astype(jnp.float32)
        metrics = {"reward_base": r_base, "reward_reach": r_reach, "reward_lift": r_lift, "success": success}
        return reward, jnp.zeros((), bool), metrics


# Where the scripted solver parks the cube in the arm's frame before it picks (mid-reach, pointing down).
PICK_AT = (0.30, 0.0)


def scripted_pick(qpos: jax.Array, target: jax.Array, wrist: jax.Array, config: PiperMobilePickConfig) -> jax.Array:
    """A scripted drive-and-pick from the simulator's state (vmappable): steer the base until the cube sits
    `PICK_AT` ahead of joint 1, then hover over the cube, turn the jaws square to it, descend, close, lift.

    qpos [18]: the env's joint positions; target [3], wrist []: the controller's end-effector target and wrist
    yaw (the env's `info["target"]`, `info["wrist"]`). Phases follow the state, not the clock, so the drive may
    take as long as it needs.
    """
    base, cube_w = qpos[BASE_QPOS], qpos[CUBE_QPOS]
    cube = world_to_arm(base, cube_w)
    tcp = kin.tcp_position(qpos[ARM_QPOS])
    opening = qpos[9] + qpos[10]
    # Drive: turn towards the cube (seen from the base's centre), and close the distance once facing it.
    err_x, err_y = cube[0] - PICK_AT[0], cube[1] - PICK_AT[1]
    heading = jnp.arctan2(cube[1], cube[0] + ARM_MOUNT[0])
    turn = jnp.clip(3.0 * heading / config.yaw_rate, -1.0, 1.0)
    forward = jnp.clip(3.0 * err_x / config.base_speed, -1.0, 1.0) * (jnp.abs(heading) < 0.5)
    parked = (jnp.abs(err_x) < 0.04) & (jnp.abs(err_y) < 0.04)
    # Pick: the jaws square to the cube (its faces repeat every 90 deg), then above, down, close, up.
    rel = cube_yaw(qpos[CUBE_QUAT]) - base[2]
    square = jnp.mod(rel + math.pi / 4, math.pi / 2) - math.pi / 4
    closing = opening < 2 * FINGER_OPEN - 0.004
    holding = opening < 2 * CUBE_HALF + 0.004
    over = jnp.linalg.norm(tcp[:2] - cube[:2]) < 0.01
    at_grasp = jnp.linalg.norm(tcp - cube) < 0.01
    lift_z = CUBE_Z_ON_TABLE - BASE_HEIGHT + 0.1
    home = kin.tcp_position(jnp.asarray(kin.HOME_QPOS))
    above = cube + jnp.array([0.0, 0.0, 0.08])
    waypoint = jnp.where(over | closing, cube, above)
    waypoint = jnp.where(holding, jnp.concatenate([tcp[:2], jnp.full((1,), lift_z)]), waypoint)
    waypoint = jnp.where(parked | closing, waypoint, home)
    arm = jnp.clip((waypoint - target) / config.action_scale, -1.0, 1.0)
    turn_wrist = jnp.clip((square - wrist) / config.wrist_scale, -1.0, 1.0)
    grip = jnp.where(at_grasp | closing, 1.0, -1.0)
    drive = jnp.where(holding, 0.0, jnp.stack([forward, turn]))  # with the cube in hand, the base stays put
    return jnp.concatenate([drive, arm, turn_wrist[None], grip[None]])
