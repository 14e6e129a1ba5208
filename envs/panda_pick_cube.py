"""PandaPickCube: SERL's simulated pick benchmark (franka_sim's PandaPickCube), rebuilt for MJX.

Action (4,) in [-1, 1]: a TCP target delta (dx, dy, dz) * `action_scale` metres, accumulated into a target
clipped to the workspace box (like SERL's mocap target), plus a gripper command (-1 open ... +1 closed).
The arm tracks the target through damped least-squares IK (pure JAX, `envs.panda_kinematics`) feeding the
joints' position servos, with the hand kept pointing down.

State observation: tcp position (3), tcp velocity (3), gripper opening (1), and the cube position (3) only
when the policy does not see pixels (`cube_in_state`).

Reward (SERL): 0.3 * exp(-20 * |p_cube - p_tcp|) + 0.7 * clip((z_cube - z_init) / 0.2, 0, 1).
`success` (not in SERL): the cube is lifted at least `success_height` above its start.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco

from envs import panda_kinematics as kin
from serl_gs.mjx_env import Info, Obs, Task

ASSET = Path(__file__).parent / "assets" / "panda_pick_cube.xml"

ARM_DOF = 7
FINGER_OPEN = 0.04  # per finger, metres
CUBE_HALF = 0.025
# qpos layout: 7 arm joints, 2 fingers, cube freejoint (xyz + wxyz quat).
CUBE_QPOS = slice(9, 12)


@dataclasses.dataclass(frozen=True)
class PandaPickCubeConfig:
    episode_length: int = 100  # control steps (50 Hz: 2 s)
    n_substeps: int = 5  # physics steps of 4 ms per control step
    action_scale: float = 0.1  # metres of target motion per unit action per step (SERL: 0.1)
    workspace_low: tuple[float, float, float] = (0.2, -0.3, 0.0)
    workspace_high: tuple[float, float, float] = (0.6, 0.3, 0.5)
    cube_xy_low: tuple[float, float] = (0.25, -0.25)
    cube_xy_high: tuple[float, float] = (0.55, 0.25)
    success_height: float = 0.1  # lift above the start that counts as success
    lift_height: float = 0.2  # lift at which the lift reward saturates
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


class PandaPickCube(Task):
    can_terminate = False  # episodes end by the time limit only

    def __init__(self, config: PandaPickCubeConfig | None = None):
        self.config = config = config or PandaPickCubeConfig()
        self.mj_model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.n_substeps = config.n_substeps
        self.episode_length = config.episode_length
        self.action_size = 4
        self.action_repeat = config.action_repeat
        self._home_q = jnp.asarray(kin.HOME_QPOS, jnp.float32)
        home_pos, self._down_rot = kin.tcp_pose(self._home_q)  # hand pointing down, home yaw
        self._home_tcp = home_pos
        self._ws_low = jnp.asarray(config.workspace_low, jnp.float32)
        self._ws_high = jnp.asarray(config.workspace_high, jnp.float32)

    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        c = self.config
        cube_xy = jax.random.uniform(
            rng, (2,), minval=jnp.asarray(c.cube_xy_low), maxval=jnp.asarray(c.cube_xy_high)
        )
        cube = jnp.concatenate([cube_xy, jnp.array([CUBE_HALF, 1.0, 0.0, 0.0, 0.0])])
        fingers = jnp.full((2,), FINGER_OPEN)
        qpos = jnp.concatenate([self._home_q, fingers, cube]).astype(jnp.float32)
        qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        ctrl = jnp.concatenate([self._home_q, fingers]).astype(jnp.float32)
        info = {"target": self._home_tcp.astype(jnp.float32), "z_init": jnp.asarray(CUBE_HALF, jnp.float32)}
        return qpos, qvel, ctrl, info

    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        action = jnp.clip(action, -1.0, 1.0)
        target = jnp.clip(info["target"] + self.config.action_scale * action[:3], self._ws_low, self._ws_high)
        q_arm = kin.solve_ik(qpos[:ARM_DOF], target, self._down_rot, iterations=self.config.ik_iterations)
        finger = FINGER_OPEN * (1.0 - action[3]) / 2.0  # -1: open, +1: closed
        ctrl = jnp.concatenate([q_arm, jnp.stack([finger, finger])])
        return ctrl, {**info, "target": target}

    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        q, qd = qpos[:ARM_DOF], qvel[:ARM_DOF]
        parts = [kin.tcp_position(q), kin.tcp_velocity(q, qd), (qpos[7] + qpos[8])[None]]
        if self.config.cube_in_state:
            parts.append(qpos[CUBE_QPOS])
        return {"state": jnp.concatenate(parts).astype(jnp.float32)}

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        c = self.config
        cube, tcp = qpos[CUBE_QPOS], kin.tcp_position(qpos[:ARM_DOF])
        lifted = cube[2] - info["z_init"]
        r_close = jnp.exp(-20.0 * jnp.linalg.norm(cube - tcp))
        r_lift = jnp.clip(lifted / c.lift_height, 0.0, 1.0)
        reward = 0.3 * r_close + 0.7 * r_lift
        success = (lifted >= c.success_height).astype(jnp.float32)
        metrics = {"reward_close": r_close, "reward_lift": r_lift, "success": success}
        return reward, jnp.zeros((), bool), metrics


def scripted_action(obs_state: jax.Array, phase_step: jax.Array, action_scale: float = 0.1) -> jax.Array:
    """A scripted pick for the state-only task (cube in the state): reach above, descend, close, lift.

    obs_state [10]: tcp (3), tcp vel (3), opening (1), cube (3); phase_step: the env's step count.
    Used by the solvability test and as a sanity baseline; vmappable.
    """
    tcp, cube = obs_state[:3], obs_state[7:10]
    above = cube + jnp.array([0.0, 0.0, 0.1])
    grasp = cube + jnp.array([0.0, 0.0, 0.005])
    lift = cube.at[2].set(0.3)
    # Phases by time: hover (0-30), descend (30-50), close (50-60), lift (60-).
    waypoint = jnp.where(phase_step < 30, above, jnp.where(phase_step < 60, grasp, lift))
    waypoint = jnp.where(phase_step >= 60, jnp.concatenate([tcp[:2], lift[2:]]), waypoint)
    delta = jnp.clip((waypoint - tcp) / action_scale, -1.0, 1.0)
    grip = jnp.where(phase_step >= 50, 1.0, -1.0)
    return jnp.concatenate([delta, grip[None]])
