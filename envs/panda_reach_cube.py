"""PandaReachCube: the first rung of the Panda ladder (reach, lift, place, stack, insert): bring the open gripper
to the cube, on PandaPickCube's arm, scene and cameras (front + wrist).

Action (3,) in [-1, 1]: a TCP target delta (dx, dy, dz) * `action_scale` metres, accumulated into a target
clipped to the workspace box, tracked by the same IK and servos as PandaPickCube; the gripper stays open.
State observation: tcp position (3), tcp velocity (3), gripper opening (1), and the cube position (3) only when
the policy does not see pixels (`cube_in_state`).

Reward (SERL's dense reaching term, as in its pick task): exp(-20 * |p_cube - p_tcp|), in (0, 1].
`success`: the TCP is within `success_distance` of the cube's centre.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from envs import panda_kinematics as kin
from envs.panda_pick_cube import ARM_DOF, CUBE_QPOS, PandaPickCube, PandaPickCubeConfig
from serl_gs.mjx_env import Info


@dataclasses.dataclass(frozen=True)
class PandaReachCubeConfig(PandaPickCubeConfig):
    episode_length: int = 100  # control steps (50 Hz: 2 s), as PandaPickCube
    success_distance: float = 0.02  # metres between the TCP and the cube's centre


class PandaReachCube(PandaPickCube):
    def __init__(self, config: PandaReachCubeConfig | None = None):
        super().__init__(config or PandaReachCubeConfig())
        self.action_size = 3

    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        return super().control(qpos, qvel, info, jnp.concatenate([action, jnp.full((1,), -1.0)]))  # open

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        distance = jnp.linalg.norm(qpos[CUBE_QPOS] - kin.tcp_position(qpos[:ARM_DOF]))
        reward = jnp.exp(-20.0 * distance)
        success = (distance < self.config.success_distance).astype(jnp.float32)
        return reward, jnp.zeros((), bool), {"distance": distance, "success": success}


def scripted_reach(obs_state: jax.Array, phase_step: jax.Array, action_scale: float = 0.1) -> jax.Array:
    """A scripted reach for the state-only task: over the cube first (so the open fingers clear it), then down.

    obs_state [10]: tcp (3), tcp vel (3), opening (1), cube (3); phase_step: the env's step count. Vmappable."""
    tcp, cube = obs_state[:3], obs_state[7:10]
    waypoint = jnp.where(phase_step < 40, cube + jnp.array([0.0, 0.0, 0.1]), cube)
    return jnp.clip((waypoint - tcp) / action_scale, -1.0, 1.0)
