"""Batched CPU MuJoCo physics (serl_gs.cpu_physics): poses for the render stage, tracking cameras included."""

from __future__ import annotations

import mujoco
import numpy as np

from serl_gs.cpu_physics import CpuBatchedPhysics
from serl_gs.render.poses import poses_from_qpos

TRACKING_CAMERAS = """
<mujoco>
  <worldbody>
    <body name="box" pos="0 0 1">
      <freejoint/>
      <geom type="box" size=".1 .2 .1"/>
      <camera name="track" mode="trackcom" pos="0 -1 0.5"/>
    </body>
    <camera name="target" mode="targetbody" target="box" pos="1 1 1"/>
  </worldbody>
</mujoco>
"""


def test_poses_of_every_cpu_path_match_mujoco_forward_for_tracking_cameras():
    model = mujoco.MjModel.from_xml_string(TRACKING_CAMERAS)
    rng = np.random.default_rng(0)
    qpos = np.zeros((3, model.nq))
    qpos[:, :3] = rng.uniform(-1, 1, (3, 3))
    quat = rng.normal(size=(3, 4))
    qpos[:, 3:] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    physics = CpuBatchedPhysics(model, 3, n_substeps=1, nthread=1)
    physics.set_state(np.arange(3), qpos, np.zeros((3, model.nv)))
    try:
        batched = physics.poses(np.array([2, 0]))
    finally:
        physics.close()
    from_qpos = poses_from_qpos(model, qpos[[2, 0]])
    data = mujoco.MjData(model)
    for row, env in enumerate([2, 0]):
        data.qpos[:] = qpos[env]
        mujoco.mj_forward(model, data)
        want = (data.xpos, data.xquat, data.cam_xpos, data.cam_xmat.reshape(-1, 3, 3))
        for got in (batched, from_qpos):
            for field, expected in zip(got, want, strict=True):
                np.testing.assert_allclose(field[row], expected, atol=1e-9)
