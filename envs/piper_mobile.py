"""The mobile Piper's MJCF, built with MjSpec from primitive geoms: an AgileX-Piper-like 6-DoF arm with a
parallel gripper (link frames from the modified-DH table of `envs.piper_kinematics`, joint limits from
piper_description) on a planar base (x, y slide joints and a yaw hinge), a table and a 4 cm cube.

- The base is driven by velocity actuators (world-frame x and y velocity, yaw rate: the task turns its forward
  speed into x and y); nothing of it collides. The slide joints have no gravity along them, so it rolls flat.
- The arm's joints are position servos (with gravity compensation, as the Panda's); the two fingers slide
  0-3.5 cm each (Piper's 7 cm stroke), and at finger position f the inner face of each pad is f from the
  centre, so the opening is the sum of the two finger joints.
- As in envs/assets/panda_pick_cube.xml, only the finger pads, the cube and the table top collide, through
  explicit <pair>s of primitives that MJX (JAX and Warp) supports (box-box, box-plane); the rest is visual.
- Cameras: `base` on a mast at the back right of the base, looking forward and down over the arm's workspace, and
  `wrist` on the hand, looking down the fingers. Both are fixed to their (moving) bodies.

qpos: base x, y, yaw (3), arm joints (6), fingers (2), cube freejoint (xyz + wxyz quat).
"""

from __future__ import annotations

import functools
import math

import mujoco
import numpy as np

from envs import piper_kinematics as kin

TABLE_TOP = 0.30  # metres: the table's surface
TABLE_FRONT = 0.80  # x of the table's front edge (the base starts behind it, facing it)
TABLE_HALF = (0.30, 0.55)  # half size in x and y; centred at (TABLE_FRONT + TABLE_HALF[0], 0)
BASE_HALF = (0.22, 0.18, 0.09)  # the base's box
BASE_HEIGHT = TABLE_TOP + 0.05  # z of the base's top, where the arm stands: just above the table (see kin)
ARM_MOUNT = (0.15, 0.0, BASE_HEIGHT)  # joint 1's base in the base's frame
BASE_X_RANGE = (-1.0, 0.56)  # the base stops before its front reaches the table's edge
CUBE_HALF = 0.02
FINGER_OPEN = 0.035  # per finger, metres
PAD_HALF = (0.008, 0.004, 0.012)

GREY, DARK, WHITE = (0.55, 0.57, 0.6, 1.0), (0.2, 0.2, 0.22, 1.0), (0.9, 0.9, 0.9, 1.0)


def _quat_x(angle: float) -> np.ndarray:
    return np.array([math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0])


def _quat_z(angle: float) -> np.ndarray:
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def _look_at(pos, target) -> list[float]:
    """MJCF xyaxes of a camera at `pos` looking at `target`, level (image x horizontal)."""
    forward = np.subtract(target, pos) / np.linalg.norm(np.subtract(target, pos))
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return [*right, *np.cross(right, forward)]


def _visual(body, **kwargs) -> None:
    body.add_geom(contype=0, conaffinity=0, **kwargs)


def _add_arm(base) -> mujoco.MjsBody:
    """The Piper's six links on `base`, one body per DH frame; returns the last (the flange, frame 6)."""
    mount = base.add_body(name="arm_base", pos=list(ARM_MOUNT))
    _visual(mount, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.05, 0.05], pos=[0, 0, 0.05], rgba=list(WHITE))
    links = [mount]
    for i, (a, d, alpha, offset) in enumerate(kin.PIPER_DH, start=1):
        # Frame i = RotX(alpha) TransX(a) RotZ(offset + q) TransZ(d): the joint is the body's z axis, the
        # angle offset is folded into the body's orientation so that qpos = the Piper's joint angle.
        pos = np.array([a, 0.0, 0.0]) + np.array([0.0, -math.sin(alpha) * d, math.cos(alpha) * d])
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, _quat_x(alpha), _quat_z(offset))
        body = links[-1].add_body(name=f"link{i}", pos=pos.tolist(), quat=quat.tolist(), gravcomp=1)
        body.add_joint(
            name=f"joint{i}", axis=[0, 0, 1], range=[kin.JOINT_LOWER[i - 1], kin.JOINT_UPPER[i - 1]],
            armature=0.05, damping=1.0,
        )
        _visual(body, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.042, 0.035], rgba=list(DARK))
        # The link as a capsule from the parent's joint to this one (this origin in the parent's frame).
        if np.linalg.norm(pos) > 1e-6:
            _visual(links[-1], type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[0, 0, 0, *pos], size=[0.032],
                    rgba=list(WHITE))
        links.append(body)
    return links[-1]


def _add_gripper(flange) -> None:
    """Piper's parallel gripper on the flange (DH frame 6: z along the tool, jaws closing along y)."""
    _visual(flange, type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.03, 0.055, 0.025], pos=[0, 0, 0.03], rgba=list(DARK))
    flange.add_site(name="tcp", pos=[0, 0, kin.TCP_OFFSET], size=[0.005])
    # Beside the fingers, tilted away from the base (pointing down, the flange's x is the base's backward): the
    # cube under and ahead of the gripper, the fingertips at the image's edges, the base out of view.
    flange.add_camera(name="wrist", pos=[0.055, 0, 0.06], xyaxes=[0, -1, 0, -0.125, 0, -0.05], fovy=75)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        finger = flange.add_body(name=f"{side}_finger", pos=[0, 0, 0.06], gravcomp=1)
        finger.add_joint(
            name=f"finger_{side}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, sign, 0], range=[0, FINGER_OPEN],
            armature=0.01, damping=5.0,
        )
        _visual(finger, type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.01, 0.005, 0.03], pos=[0, sign * 0.009, 0.025],
                rgba=list(GREY))
        finger.add_geom(
            name=f"{side}_pad", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(PAD_HALF),
            pos=[0, sign * PAD_HALF[1], kin.TCP_OFFSET - 0.06], rgba=list(DARK), friction=[1.5, 0.01, 0.0001],
            solref=[0.01, 1], solimp=[0.95, 0.99, 0.001, 0.5, 2.0], condim=4, contype=0, conaffinity=0,
        )


def _add_base(spec: mujoco.MjSpec) -> mujoco.MjsBody:
    base = spec.worldbody.add_body(name="base")
    base.add_joint(name="base_x", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0], range=list(BASE_X_RANGE),
                   damping=5.0)
    base.add_joint(name="base_y", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 1, 0], range=[-1.0, 1.0], damping=5.0)
    base.add_joint(name="base_yaw", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1], damping=2.0)
    hx, hy, hz = BASE_HALF
    _visual(base, type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, hz], pos=[0, 0, 0.07 + hz], rgba=[0.2, 0.3, 0.5, 1])
    # A deck from the box to the arm's height, and four wheels.
    deck_half = (BASE_HEIGHT - 0.07 - 2 * hz) / 2
    _visual(base, type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.1, 0.1, deck_half],
            pos=[ARM_MOUNT[0] - 0.02, 0, BASE_HEIGHT - deck_half], rgba=list(GREY))
    for sx in (-1, 1):
        for sy in (-1, 1):
            _visual(base, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.07, 0.025],
                    pos=[sx * (hx - 0.07), sy * (hy + 0.03), 0.07], quat=[0.7071068, 0.7071068, 0, 0], rgba=list(DARK))
    # The base camera on a mast at the back right corner, looking over the arm's shoulder at the table ahead
    # (from straight behind, the upper arm hides the workspace).
    mast = (-0.12, -0.2)
    _visual(base, type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[*mast, 0.2, *mast, 0.97], size=[0.015], rgba=list(GREY))
    eye = [*mast, 1.0]
    base.add_camera(name="base", pos=eye, xyaxes=_look_at(eye, [ARM_MOUNT[0] + 0.3, 0.0, TABLE_TOP]), fovy=60)
    return base


def _add_scene(spec: mujoco.MjSpec) -> None:
    world = spec.worldbody
    world.add_light(pos=[0.5, 0, 2.5], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    _visual(world, name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2.5, 2.0, 0.01], pos=[0.3, 0, 0],
            rgba=[0.35, 0.37, 0.4, 1])
    cx = TABLE_FRONT + TABLE_HALF[0]
    # The table top collides as a plane (only the cube and the pads touch it, from above), drawn over the
    # table's finite top.
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[*TABLE_HALF, 0.01], pos=[cx, 0, TABLE_TOP],
                   rgba=[0.72, 0.6, 0.45, 1], contype=0, conaffinity=0)
    _visual(world, name="table_edge", type=mujoco.mjtGeom.mjGEOM_BOX, size=[*TABLE_HALF, 0.02],
            pos=[cx, 0, TABLE_TOP - 0.021], rgba=[0.62, 0.5, 0.36, 1])
    for sx in (-1, 1):
        for sy in (-1, 1):
            leg = [cx + sx * (TABLE_HALF[0] - 0.04), sy * (TABLE_HALF[1] - 0.04)]
            _visual(world, type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, (TABLE_TOP - 0.04) / 2],
                    pos=[*leg, (TABLE_TOP - 0.04) / 2], rgba=[0.5, 0.4, 0.3, 1])
    _visual(world, name="back_wall", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.02, 2.0, 0.8],
            pos=[cx + TABLE_HALF[0] + 0.6, 0, 0.8], rgba=[0.82, 0.84, 0.86, 1])
    cube = world.add_body(name="cube", pos=[cx, 0, TABLE_TOP + CUBE_HALF])
    cube.add_freejoint(name="cube")
    cube.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3, mass=0.05,
                  rgba=[0.85, 0.15, 0.12, 1], friction=[1.2, 0.01, 0.0001], condim=4, contype=0, conaffinity=0)


@functools.cache
def _compiled_xml() -> str:
    """The model's MJCF text (built once per process)."""
    spec = mujoco.MjSpec()
    spec.modelname = "piper_mobile_pick"
    spec.compiler.degree = False
    spec.option.timestep = 0.004
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.iterations = 6
    spec.option.ls_iterations = 6
    spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
    spec.option.disableflags |= mujoco.mjtDisableBit.mjDSBL_EULERDAMP
    spec.visual.global_.offwidth, spec.visual.global_.offheight = 640, 480
    spec.default.geom.density = 1000
    _add_gripper(_add_arm(_add_base(spec)))
    _add_scene(spec)  # after the robot: the cube's freejoint comes last in qpos
    for pad in ("left_pad", "right_pad"):
        spec.add_pair(geomname1=pad, geomname2="cube")
        spec.add_pair(geomname1=pad, geomname2="table")
    spec.add_pair(geomname1="cube", geomname2="table")
    # Base: velocity servos in the world's x and y and in yaw (the task rotates its forward speed into x, y).
    for joint, kv, force in (("base_x", 3000.0, 400.0), ("base_y", 3000.0, 400.0), ("base_yaw", 300.0, 100.0)):
        act = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=kv)
        act.forcerange, act.forcelimited = [-force, force], mujoco.mjtLimited.mjLIMITED_TRUE
    gains = ((400.0, 40.0, 60.0),) * 3 + ((100.0, 10.0, 15.0),) * 3  # (kp, kv, force limit) per arm joint
    for i, (kp, kv, force) in enumerate(gains, start=1):
        act = spec.add_actuator(name=f"joint{i}", target=f"joint{i}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=kv)
        act.forcerange, act.forcelimited = [-force, force], mujoco.mjtLimited.mjLIMITED_TRUE
    for side in ("left", "right"):
        act = spec.add_actuator(name=f"finger_{side}", target=f"finger_{side}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=300.0, kv=10.0)
        act.forcerange, act.forcelimited = [-20.0, 20.0], mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange, act.ctrllimited = [0.0, FINGER_OPEN], mujoco.mjtLimited.mjLIMITED_TRUE
    spec.compile()
    return spec.to_xml()


def piper_mobile_model() -> mujoco.MjModel:
    """The compiled model (a fresh MjModel each call: callers may change theirs)."""
    return mujoco.MjModel.from_xml_string(_compiled_xml())
