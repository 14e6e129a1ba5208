"""PandaStackCube: the fourth rung of the Panda ladder (reach, lift, place, stack, insert): put the red cube (A)
on the blue one (B), on PandaPickCube's arm, scene and cameras (front + wrist).

The model is PandaPickCube's MJCF plus cube B (`add_second_cube`): the same 5 cm cube, free, colliding with the
table, the finger pads and cube A. qpos: 7 arm joints, 2 fingers, cube A (xyz + quat), cube B (xyz + quat).

Action, observation, reward and `success` are PandaPlaceCube's with the goal on top of cube B: cube A's centre
one cube height above B's (state: tcp (3), tcp velocity (3), opening (1), and without pixels cube A (3) and the
goal (3)); so `success` is cube A resting on B, released, wherever B has been pushed to.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import mujoco

from envs.panda_pick_cube import ASSET, CUBE_HALF
from envs.panda_place_cube import PandaPlaceCube, PandaPlaceCubeConfig

CUBE_B_QPOS = slice(16, 19)  # cube B's freejoint position, after cube A's 7 qpos


@dataclasses.dataclass(frozen=True)
class PandaStackCubeConfig(PandaPlaceCubeConfig):
    success_xy: float = 0.02  # metres between cube A's centre and the point above cube B's, sideways


def add_second_cube(spec: mujoco.MjSpec, name: str, rgba: tuple[float, ...]) -> None:
    """A copy of PandaPickCube's cube (size, mass, friction), touching the table, the pads and the first cube."""
    cube = spec.geom("cube")
    body = spec.worldbody.add_body(name=name, pos=[0.4, 0.2, CUBE_HALF])
    body.add_freejoint(name=name)
    body.add_geom(
        name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(cube.size), mass=cube.mass, rgba=list(rgba),
        friction=list(cube.friction), condim=cube.condim,
    )
    for other in ("left_pad", "right_pad", "cube", "table"):
        spec.add_pair(geomname1=other, geomname2=name)


def stack_model() -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(ASSET))
    add_second_cube(spec, "cube_b", rgba=(0.15, 0.35, 0.85, 1.0))
    for key in list(spec.keys):  # PandaPickCube's keyframe lacks cube B's joint
        spec.delete(key)
    return spec.compile()


class PandaStackCube(PandaPlaceCube):
    def __init__(self, config: PandaStackCubeConfig | None = None):
        super().__init__(config or PandaStackCubeConfig())
        self.mj_model = stack_model()

    def target_qpos(self, xy: jax.Array) -> jax.Array:
        return jnp.concatenate([xy, jnp.array([CUBE_HALF, 1.0, 0.0, 0.0, 0.0])])

    def goal(self, qpos: jax.Array) -> jax.Array:
        """Where cube A's centre rests when stacked: one cube height above cube B's."""
        return qpos[CUBE_B_QPOS] + jnp.array([0.0, 0.0, 2 * CUBE_HALF])
