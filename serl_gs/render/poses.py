"""Body and camera poses from a MuJoCo state, for physics paths that keep only the state (CPU MuJoCo).

MJX steps already hold `data.xpos/xquat/cam_xpos/cam_xmat`; a CPU path gets the same fields here with
MuJoCo's own kinematics (mj_kinematics, mj_comPos, mj_camlight: microseconds per env). Both the vector env's
CPU batch (`CpuBatchedPhysics.poses`) and `poses_from_qpos` use `pose_rows`, so every CPU caller computes
poses the same way, tracking cameras included.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

Poses = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # xpos, xquat, cam_xpos, cam_xmat


def pose_rows(mj_model: mujoco.MjModel, data: mujoco.MjData, n: int, load: Callable[[int], None]) -> Poses:
    """For each row i < n, `load(i)` puts env i's state into `data`; returns xpos [n, nbody, 3],
    xquat [n, nbody, 4], cam_xpos [n, ncam, 3], cam_xmat [n, ncam, 3, 3] (float64)."""
    xpos, xquat = np.empty((n, mj_model.nbody, 3)), np.empty((n, mj_model.nbody, 4))
    cam_xpos, cam_xmat = np.empty((n, mj_model.ncam, 3)), np.empty((n, mj_model.ncam, 3, 3))
    for i in range(n):
        load(i)
        mujoco.mj_kinematics(mj_model, data)
        mujoco.mj_comPos(mj_model, data)  # tracking cameras (mode="trackcom", targetbody) need the CoMs
        mujoco.mj_camlight(mj_model, data)
        xpos[i], xquat[i] = data.xpos, data.xquat
        cam_xpos[i], cam_xmat[i] = data.cam_xpos, data.cam_xmat.reshape(-1, 3, 3)
    return xpos, xquat, cam_xpos, cam_xmat


def poses_from_qpos(mj_model: mujoco.MjModel, qpos: np.ndarray, data: mujoco.MjData | None = None) -> Poses:
    """qpos [B, nq] -> (xpos [B, nbody, 3], xquat [B, nbody, 4], cam_xpos [B, ncam, 3],
    cam_xmat [B, ncam, 3, 3]), float64, ready for `RenderStage.render`. `data` is reused scratch if given."""
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != mj_model.nq:
        raise ValueError(f"qpos must have shape [B, {mj_model.nq}], got {qpos.shape}")
    data = data or mujoco.MjData(mj_model)

    def load(i: int) -> None:
        data.qpos[:] = qpos[i]

    return pose_rows(mj_model, data, len(qpos), load)
