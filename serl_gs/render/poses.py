"""Body and camera poses from joint positions, for physics paths that keep only qpos (CPU MuJoCo rollout).

MJX steps already hold `data.xpos/xquat/cam_xpos/cam_xmat`; a CPU path that stores qpos per env gets the
same fields here with MuJoCo's own kinematics (mj_kinematics, mj_comPos, mj_camlight: microseconds per env).
"""

from __future__ import annotations

import mujoco
import numpy as np


def poses_from_qpos(
    mj_model: mujoco.MjModel, qpos: np.ndarray, data: mujoco.MjData | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """qpos [B, nq] -> (xpos [B, nbody, 3], xquat [B, nbody, 4], cam_xpos [B, ncam, 3],
    cam_xmat [B, ncam, 3, 3]), float64, ready for `RenderStage.render`. `data` is reused scratch if given."""
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != mj_model.nq:
        raise ValueError(f"qpos must have shape [B, {mj_model.nq}], got {qpos.shape}")
    data = data or mujoco.MjData(mj_model)
    b = len(qpos)
    xpos, xquat = np.empty((b, mj_model.nbody, 3)), np.empty((b, mj_model.nbody, 4))
    cam_xpos, cam_xmat = np.empty((b, mj_model.ncam, 3)), np.empty((b, mj_model.ncam, 3, 3))
    for i in range(b):
        data.qpos[:] = qpos[i]
        mujoco.mj_kinematics(mj_model, data)
        mujoco.mj_comPos(mj_model, data)  # tracking cameras (mode="trackcom", targetbody) need the CoMs
        mujoco.mj_camlight(mj_model, data)
        xpos[i], xquat[i] = data.xpos, data.xquat
        cam_xpos[i], cam_xmat[i] = data.cam_xpos, data.cam_xmat.reshape(-1, 3, 3)
    return xpos, xquat, cam_xpos, cam_xmat
