"""PandaPegInsertion: the fifth rung of the Panda ladder (reach, lift, place, stack, insert): push a square peg
held in the gripper into a socket on the table with 2.5 mm of clearance per side, on PandaPickCube's arm, scene
and cameras (front + wrist).

The peg starts in the hand, as in SERL's peg insertion (the robot holds the peg; the task is the insertion, not
the pick): the ladder's earlier rungs already teach picking, and a 2.5 mm fit leaves no room for a peg that
slid or tilted in a grasp the policy made itself. The gripper command still acts (the action is the ladder's
4-D one); opening drops the peg.

The model is PandaPickCube's MJCF with the cube replaced by the peg (a 2.5 x 2.5 x 8 cm box on a freejoint,
gripped 2.5 cm above its centre) and a socket (`add_socket`): four box walls, 4 cm high, around a 3 x 3 cm hole
whose floor is the table. The socket stands on two horizontal slide joints, each held by a stiff position servo
whose target `control` keeps at the episode's hole position, so `init` can place it anywhere on the table and
the peg cannot shove it (the servos' 5e4 N/m give 0.2 mm to a 10 N push). Every collision is a box pair
(peg-walls, pads-walls, peg-pads) or box-plane (peg, pads on the table), which MJX and its Warp implementation
both support; MJX-Warp and MuJoCo C agree on its rollout once the pads start pressed into the peg
(`PAD_SQUEEZE`; docs/tasks.md).
The arm starts with the peg 13 cm over the middle of the table, not at home (49 cm up): carried down from home,
the peg crept up to 2 cm along the pads and sometimes out of them.
qpos: 7 arm joints, 2 fingers, peg (xyz + quat), socket (x, y).

Action (4,) in [-1, 1]: PandaPickCube's (TCP target delta * `action_scale` + gripper, -1 open ... +1 closed).
State observation: tcp position (3), tcp velocity (3), gripper opening (1), and, only when the policy does not
see pixels (`cube_in_state`, the ladder's name for "the objects' positions"), the peg's centre (3) and the
hole's entry (3: the centre of the socket's top opening).

Reward (SERL-style dense, in [0, 1]):
    0.2 * exp(-20 |p_grip - p_tcp|)       keep holding the peg (p_grip: the peg's point between the pads)
  + 0.3 * exp(-20 |xy_peg - xy_hole|)     bring it over the hole
  + 0.5 * inside * clip(depth / success_depth, 0, 1)   push it in
`inside`: the peg's centre is over the hole's opening (within its half width on both axes); `depth`: how far
the peg's bottom is below the socket's top. `success`: inside and depth >= `success_depth` (2.5 of the hole's
4 cm), whatever the gripper does.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import mujoco

from envs import panda_kinematics as kin
from envs.panda_pick_cube import ARM_DOF, ASSET, PandaPickCube, PandaPickCubeConfig
from serl_gs.mjx_env import Info, Obs

PEG_HALF = 0.0125  # half side of the square peg
PEG_HALF_LENGTH = 0.04
GRIP_OFFSET = 0.025  # the TCP sits this far above the peg's centre when it is held
# The pads start pressed this far into the peg's sides, about where the fingers' squeeze settles them (MuJoCo C:
# 0.38-0.42 mm over the first 10 physics steps). Started exactly touching (distance ~0), the contacts sat on the
# collision threshold: MuJoCo C (float64) found both pads, MJX-Warp (float32) only one, and its first step
# squeezed the peg from one side, tilting it (the 1-2 mm the two paths used to part by).
PAD_SQUEEZE = 0.0004
CLEARANCE = 0.0025  # per side, between the peg and the socket's walls
HOLE_HALF = PEG_HALF + CLEARANCE
WALL_HALF_THICKNESS = 0.005
SOCKET_HEIGHT = 0.04
SOCKET_MASS = 5.0  # kg, with the servo's gains below: a stiff, well-damped hold
SOCKET_KP, SOCKET_KV = 5e4, 1e3
PEG_QPOS = slice(9, 12)  # the peg's freejoint position, where PandaPickCube's cube was
SOCKET_QPOS = slice(16, 18)  # the socket's slide joints (x, y), after the peg's 7 qpos


@dataclasses.dataclass(frozen=True)
class PandaPegInsertionConfig(PandaPickCubeConfig):
    episode_length: int = 120  # control steps (50 Hz: 2.4 s): carry over the hole, line up, push in
    start_tcp: tuple[float, float, float] = (0.425, 0.0, 0.2)  # where the hand holds the peg at the start
    hole_xy_low: tuple[float, float] = (0.3, -0.2)
    hole_xy_high: tuple[float, float] = (0.55, 0.2)
    success_depth: float = 0.025  # of the socket's 4 cm


def add_peg(spec: mujoco.MjSpec) -> None:
    """The peg in place of PandaPickCube's cube: same friction, colliding with the pads and the table."""
    cube = spec.geom("cube")
    friction, condim = list(cube.friction), cube.condim
    for pair in list(spec.pairs):
        if "cube" in (pair.geomname1, pair.geomname2):
            spec.delete(pair)
    spec.delete(spec.body("cube"))
    body = spec.worldbody.add_body(name="peg", pos=[0.3, 0.0, 0.45])
    body.add_freejoint(name="peg")
    body.add_geom(
        name="peg", type=mujoco.mjtGeom.mjGEOM_BOX, size=[PEG_HALF, PEG_HALF, PEG_HALF_LENGTH], mass=0.05,
        rgba=[0.9, 0.55, 0.1, 1.0], friction=friction, condim=condim,
    )
    # The pads' own contact settings (their geom class: friction 1.5, torsional friction, stiffer), which explicit
    # pairs do not inherit from geoms.
    pad = spec.geom("left_pad")
    for other in ("left_pad", "right_pad"):
        spec.add_pair(
            geomname1=other, geomname2="peg", condim=4, friction=[pad.friction[0], *pad.friction, pad.friction[2]],
            solref=list(pad.solref), solimp=list(pad.solimp),
        )
    spec.add_pair(geomname1="table", geomname2="peg")


def add_socket(spec: mujoco.MjSpec) -> None:
    """Four walls around the hole on two slide joints (x, y) at the world origin, each held by a position servo;
    the walls touch the peg and the finger pads."""
    body = spec.worldbody.add_body(name="socket", pos=[0.0, 0.0, 0.0])
    for axis, suffix in (([1.0, 0.0, 0.0], "x"), ([0.0, 1.0, 0.0], "y")):
        body.add_joint(name=f"socket_{suffix}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=axis)
    outer = HOLE_HALF + WALL_HALF_THICKNESS
    half_z = SOCKET_HEIGHT / 2
    # The x walls span the corners, the y walls fit between them: no overlap, a closed square.
    boxes = {
        "wall_px": ([outer, 0.0, half_z], [WALL_HALF_THICKNESS, outer + WALL_HALF_THICKNESS, half_z]),
        "wall_nx": ([-outer, 0.0, half_z], [WALL_HALF_THICKNESS, outer + WALL_HALF_THICKNESS, half_z]),
        "wall_py": ([0.0, outer, half_z], [HOLE_HALF, WALL_HALF_THICKNESS, half_z]),
        "wall_ny": ([0.0, -outer, half_z], [HOLE_HALF, WALL_HALF_THICKNESS, half_z]),
    }
    for name, (pos, size) in boxes.items():
        body.add_geom(
            name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=pos, size=size, mass=SOCKET_MASS / len(boxes),
            rgba=[0.2, 0.45, 0.75, 1.0],
        )
        for other in ("peg", "left_pad", "right_pad"):
            spec.add_pair(geomname1=other, geomname2=name)
    for suffix in ("x", "y"):
        spec.add_actuator(
            name=f"socket_{suffix}", target=f"socket_{suffix}", trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gainprm=[SOCKET_KP] + [0.0] * 9, biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            biasprm=[0.0, -SOCKET_KP, -SOCKET_KV] + [0.0] * 7,
        )


def peg_model() -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(ASSET))
    add_peg(spec)
    add_socket(spec)
    for key in list(spec.keys):  # PandaPickCube's keyframe has the cube's, not the socket's, joints
        spec.delete(key)
    return spec.compile()


# Compiled: un-jitted, 50 Gauss-Newton steps cost seconds at every construction.
_solve_start = jax.jit(functools.partial(kin.solve_ik, iterations=50))


class PandaPegInsertion(PandaPickCube):
    def __init__(self, config: PandaPegInsertionConfig | None = None):
        super().__init__(config or PandaPegInsertionConfig())
        self.mj_model = peg_model()
        # The arm starts over the table's middle, 13 cm above it, not at home (49 cm up): every centimetre carried
        # lets the peg slip further between the pads (the hand's small pitch jitter under IK rocks it along them).
        self._start_tcp = jnp.asarray(self.config.start_tcp, jnp.float32)
        self._start_q = _solve_start(self._home_q, self._start_tcp, self._down_rot)

    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        c = self.config
        hole = jax.random.uniform(rng, (2,), minval=jnp.asarray(c.hole_xy_low), maxval=jnp.asarray(c.hole_xy_high))
        # The peg between the pads, upright, the fingers closed on it (the pads' inner faces PAD_SQUEEZE inside
        # +-PEG_HALF).
        tcp = kin.tcp_position(self._start_q)
        peg = jnp.concatenate([tcp - jnp.array([0.0, 0.0, GRIP_OFFSET]), jnp.array([1.0, 0.0, 0.0, 0.0])])
        fingers = jnp.full((2,), PEG_HALF - PAD_SQUEEZE)
        qpos = jnp.concatenate([self._start_q, fingers, peg, hole]).astype(jnp.float32)
        qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        ctrl = jnp.concatenate([self._start_q, jnp.zeros(2), hole]).astype(jnp.float32)
        info = {"target": tcp.astype(jnp.float32), "hole_xy": hole.astype(jnp.float32)}
        return qpos, qvel, ctrl, info

    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        ctrl, info = super().control(qpos, qvel, info, action)
        return jnp.concatenate([ctrl, info["hole_xy"]]), info  # the socket's servos hold it where init put it

    def hole(self, qpos: jax.Array) -> jax.Array:
        """The centre of the socket's top opening."""
        return jnp.concatenate([qpos[SOCKET_QPOS], jnp.full((1,), SOCKET_HEIGHT)])

    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        q, qd = qpos[:ARM_DOF], qvel[:ARM_DOF]
        parts = [kin.tcp_position(q), kin.tcp_velocity(q, qd), (qpos[7] + qpos[8])[None]]
        if self.config.cube_in_state:
            parts += [qpos[PEG_QPOS], self.hole(qpos)]
        return {"state": jnp.concatenate(parts).astype(jnp.float32)}

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        c = self.config
        peg, tcp, hole = qpos[PEG_QPOS], kin.tcp_position(qpos[:ARM_DOF]), self.hole(qpos)
        offset = peg[:2] - hole[:2]
        inside = jnp.all(jnp.abs(offset) < HOLE_HALF)
        depth = hole[2] - (peg[2] - PEG_HALF_LENGTH)
        r_hold = jnp.exp(-20.0 * jnp.linalg.norm(peg + jnp.array([0.0, 0.0, GRIP_OFFSET]) - tcp))
        r_align = jnp.exp(-20.0 * jnp.linalg.norm(offset))
        r_insert = inside * jnp.clip(depth / c.success_depth, 0.0, 1.0)
        reward = 0.2 * r_hold + 0.3 * r_align + 0.5 * r_insert
        success = (inside & (depth >= c.success_depth)).astype(jnp.float32)
        metrics = {
            "reward_hold": r_hold, "reward_align": r_align, "reward_insert": r_insert, "depth": depth,
            "success": success,
        }
        return reward, jnp.zeros((), bool), metrics


def scripted_insert(obs_state: jax.Array, target: jax.Array, action_scale: float = 0.1) -> jax.Array:
    """A scripted insertion for the state-only task: carry the peg to 1.5 cm above the socket, line it up over
    the hole to within 1.5 mm, then push it down; a phase machine on what the state shows, not on the clock.

    obs_state [13]: tcp (3), tcp vel (3), opening (1), peg centre (3), hole entry (3); target [3]: the
    controller's TCP target (the env's `info["target"]`). Vmappable.
    """
    tcp, peg, hole = obs_state[:3], obs_state[7:10], obs_state[10:13]
    offset = hole[:2] - peg[:2]  # steer the peg, not the hand: it may sit off-centre between the pads
    bottom = peg[2] - PEG_HALF_LENGTH
    lined_up = jnp.linalg.norm(offset) < 0.0015
    entered = jnp.all(jnp.abs(offset) < HOLE_HALF) & (bottom < hole[2] - 0.002)  # the walls guide it from here
    push = lined_up | entered
    # The TCP heights that hold the peg's bottom 1.5 cm above the socket's top, and 5 mm above the hole's floor
    # (pushing on the floor would only slide the peg up between the pads).
    z = tcp[2] - bottom + jnp.where(push, 0.005, hole[2] + 0.015)
    # Sideways, the target moves by a third of the peg's offset each step (an integrator: the hand's steady lag
    # behind its target, a millimetre or two, would otherwise stay in the offset).
    waypoint = jnp.concatenate([target[:2] + 0.3 * offset, z[None]])
    # At most 1 cm per step with the peg in hand (as scripted_place), 3 mm per step down into the hole.
    speed = jnp.where(push, jnp.array([0.1, 0.1, 0.03]), jnp.full(3, 0.1))
    delta = jnp.clip((waypoint - target) / action_scale, -speed, speed)
    return jnp.concatenate([delta, jnp.ones(1)])
