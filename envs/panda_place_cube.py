"""PandaPlaceCube: the third rung of the Panda ladder (reach, lift, place, stack, insert): pick the cube and put
it down on a marked target on the table, on PandaPickCube's arm, scene and cameras (front + wrist).

The model is PandaPickCube's MJCF plus a flat green target mark (`add_target_mark`) on two horizontal slide
joints after the cube's freejoint: the mark is drawn by the 3DGS scene (pixels see where to go) and moves with
`qpos` per episode, but it does not collide and nothing pushes it (no gravity along its joints), so it stays
where `init` put it. qpos: 7 arm joints, 2 fingers, cube (xyz + quat), target (x, y).

Action (4,) in [-1, 1]: PandaPickCube's (TCP target delta * `action_scale` + gripper, -1 open ... +1 closed).
State observation: tcp position (3), tcp velocity (3), gripper opening (1), and, only when the policy does not
see pixels (`cube_in_state`), the cube position (3) and the goal (3: where the cube's centre rests on the mark).

Reward (SERL-style dense, in [0, 1]; ManiSkill's place stages):
    0.2 * max(exp(-20 |p_cube - p_tcp|), placed)       reach the cube (full once it sits on the mark)
  + 0.2 * max(clip(lift / lift_height, 0, 1), r_goal)  lift it (full once it is at the goal)
  + 0.4 * r_goal,  r_goal = exp(-10 |p_cube - p_goal|)  carry it to the goal
  + 0.2 * placed * opening / full opening              let go once it is there
`placed`: the cube's centre is within `success_xy` of the goal sideways and `success_z` vertically.
`success`: placed, resting (cube speed below `rest_speed`) and released (fingers opened wider than the cube).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import mujoco

from envs import panda_kinematics as kin
from envs.panda_pick_cube import ARM_DOF, ASSET, CUBE_HALF, CUBE_QPOS, FINGER_OPEN, PandaPickCube, PandaPickCubeConfig
from serl_gs.mjx_env import Info, Obs

CUBE_QVEL = slice(9, 12)  # the cube freejoint's linear velocity
TARGET_QPOS = slice(16, 18)  # the target mark's slide joints (x, y), after the cube's 7 qpos
RELEASED_OPENING = 2 * CUBE_HALF + 0.015  # fingers this far apart cannot hold the cube


@dataclasses.dataclass(frozen=True)
class PandaPlaceCubeConfig(PandaPickCubeConfig):
    episode_length: int = 160  # control steps (50 Hz: 3.2 s): pick, carry, put down, let go
    target_xy_low: tuple[float, float] = (0.25, -0.25)
    target_xy_high: tuple[float, float] = (0.55, 0.25)
    min_separation: float = 0.1  # metres between the cube's start and the target
    lift_height: float = 0.1  # lift at which the lift term saturates
    success_xy: float = 0.03  # metres between the cube's centre and the goal, sideways
    success_z: float = 0.01  # and vertically
    rest_speed: float = 0.05  # m/s: the cube is resting below this speed


def add_target_mark(spec: mujoco.MjSpec, name: str, half_size: float, rgba: tuple[float, ...]) -> None:
    """A flat, non-colliding square mark on the table on two slide joints (x, y) at the world origin."""
    body = spec.worldbody.add_body(name=name, pos=[0.0, 0.0, 0.0])
    for axis, suffix in (([1.0, 0.0, 0.0], "x"), ([0.0, 1.0, 0.0], "y")):
        body.add_joint(name=f"{name}_{suffix}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=axis, damping=10.0)
    # 3 mm thick: thin enough for the cube to sit "on" it, thick enough to draw over the table (no z-fighting).
    body.add_geom(
        name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=[half_size, half_size, 0.0015], pos=[0.0, 0.0, 0.0015],
        rgba=list(rgba), contype=0, conaffinity=0, mass=0.01,
    )


def place_model() -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(ASSET))
    add_target_mark(spec, "target", half_size=0.035, rgba=(0.15, 0.7, 0.25, 1.0))
    for key in list(spec.keys):  # PandaPickCube's keyframe lacks the target's joints
        spec.delete(key)
    return spec.compile()


def separated_xy(rng: jax.Array, anchor: jax.Array, low, high, min_separation: float, tries: int = 8) -> jax.Array:
    """A point uniform in [low, high] at least `min_separation` from `anchor` (the first of `tries` draws that
    is; the first draw if none is, which the default ranges make a ~1e-8 event). Vmappable, no loop."""
    draws = jax.random.uniform(rng, (tries, 2), minval=jnp.asarray(low), maxval=jnp.asarray(high))
    far = jnp.linalg.norm(draws - anchor, axis=-1) >= min_separation
    return draws[jnp.argmax(far)]


class PandaPlaceCube(PandaPickCube):
    def __init__(self, config: PandaPlaceCubeConfig | None = None):
        super().__init__(config or PandaPlaceCubeConfig())
        self.mj_model = place_model()

    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        c = self.config
        rng_cube, rng_target = jax.random.split(rng)
        qpos, qvel, ctrl, info = super().init(rng_cube)
        target = separated_xy(rng_target, qpos[CUBE_QPOS][:2], c.target_xy_low, c.target_xy_high, c.min_separation)
        qpos = jnp.concatenate([qpos, self.target_qpos(target)]).astype(jnp.float32)
        return qpos, jnp.zeros(self.mj_model.nv, jnp.float32), ctrl, info

    def target_qpos(self, xy: jax.Array) -> jax.Array:
        """The qpos of what marks the goal, standing at `xy`: the mark's slide joints."""
        return xy

    def goal(self, qpos: jax.Array) -> jax.Array:
        """Where the cube's centre rests when placed: on the target mark."""
        return jnp.concatenate([qpos[TARGET_QPOS], jnp.full((1,), CUBE_HALF)])

    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        obs = super().observe(qpos, qvel, info)
        if self.config.cube_in_state:
            obs = {"state": jnp.concatenate([obs["state"], self.goal(qpos)]).astype(jnp.float32)}
        return obs

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        c = self.config
        cube, tcp, goal = qpos[CUBE_QPOS], kin.tcp_position(qpos[:ARM_DOF]), self.goal(qpos)
        opening = qpos[7] + qpos[8]
        offset = cube - goal
        placed = (jnp.linalg.norm(offset[:2]) < c.success_xy) & (jnp.abs(offset[2]) < c.success_z)
        resting = jnp.linalg.norm(qvel[CUBE_QVEL]) < c.rest_speed
        released = opening > RELEASED_OPENING
        r_reach = jnp.maximum(jnp.exp(-20.0 * jnp.linalg.norm(cube - tcp)), placed)
        r_goal = jnp.exp(-10.0 * jnp.linalg.norm(offset))
        r_lift = jnp.maximum(jnp.clip((cube[2] - info["z_init"]) / c.lift_height, 0.0, 1.0), r_goal)
        r_release = placed * opening / (2 * FINGER_OPEN)
        reward = 0.2 * r_reach + 0.2 * r_lift + 0.4 * r_goal + 0.2 * r_release
        success = (placed & resting & released).astype(jnp.float32)
        metrics = {
            "reward_reach": r_reach, "reward_lift": r_lift, "reward_goal": r_goal, "reward_release": r_release,
            "goal_distance": jnp.linalg.norm(offset), "success": success,
        }
        return reward, jnp.zeros((), bool), metrics


def scripted_place(
    obs_state: jax.Array, target: jax.Array, phase_step: jax.Array, action_scale: float = 0.1
) -> jax.Array:
    """A scripted pick-and-place for the state-only task: PandaPickCube's pick, then lift, carry over the goal,
    lower the cube onto it, open, and back away upwards.

    obs_state [13]: tcp (3), tcp vel (3), opening (1), cube (3), goal (3: the cube's resting centre);
    target [3]: the controller's TCP target (the env's `info["target"]`); phase_step: the env's step count.
    Works for any goal (PandaStackCube's: on the other cube). Vmappable.

    The pick runs by the clock (hover 0-30, descend 30-50, close 50-60); after it, phases follow what the state
    shows, not the clock: a far goal takes longer to carry to, and a clock that opens at a fixed step dropped
    the cube from above the other cube whenever the carry ran late (most of the stack's misses).
    """
    tcp, cube, goal = obs_state[:3], obs_state[7:10], obs_state[10:13]
    opening = obs_state[6]
    carry_z = jnp.maximum(goal[2] + 0.06, 0.1)
    grasp = cube + jnp.array([0.0, 0.0, 0.005])
    # With the cube in hand, steer the cube, not the hand: it may have slid between the fingers.
    to_goal = tcp + goal - cube
    off_xy = jnp.linalg.norm(cube[:2] - goal[:2])
    # Sideways only once the cube's bottom clears the goal's support by 3 cm (it knocked the other cube over
    # otherwise); down only once over the goal (PandaStackCube's cube tips off the other one's edge otherwise),
    # with a looser gate once on the way down so a millimetre of sway does not send it back up.
    clear = cube[2] > goal[2] + 0.03
    over = (off_xy < 0.008) | ((off_xy < 0.012) & (cube[2] < carry_z - 0.02))
    # Resting on the goal: let go. The cube stays there once released, so this holds without memory.
    placed = (off_xy < 0.012) & (cube[2] < goal[2] + 0.005)
    released = placed & (opening > RELEASED_OPENING)
    carry_xy = jnp.where(clear, to_goal[:2], tcp[:2])
    # Lowering moves the controller's target, not a point off the hand: the hand lags its target by a few
    # millimetres under the cube's weight, and a waypoint relative to the hand stalled that far above the goal.
    lower_z = target[2] + goal[2] - cube[2] - 0.005
    carry = jnp.concatenate([carry_xy, jnp.where(over, lower_z, carry_z)[None]])
    back_away = jnp.concatenate([tcp[:2], (goal[2] + 0.12)[None]])
    pick_waypoint = jnp.where(phase_step < 30, cube + jnp.array([0.0, 0.0, 0.1]), grasp)
    waypoint = jnp.where(phase_step < 60, pick_waypoint, jnp.where(released, back_away, carry))
    # Steps from the controller's target, not from the hand: the target then goes straight to the waypoint
    # instead of running ahead of a lagging hand (and overshooting). Full speed to the cube; with it in hand at
    # most 1 cm per step: faster, the cube creeps between the soft finger pads and falls out when the hand stops.
    speed = jnp.where((phase_step >= 60) & ~released, 0.1, 1.0)
    delta = jnp.clip((waypoint - target) / action_scale, -speed, speed)
    grip = jnp.where((phase_step >= 50) & ~placed, 1.0, -1.0)
    return jnp.concatenate([delta, grip[None]])
