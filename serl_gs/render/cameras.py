"""Cameras from the MJCF: selected by name, intrinsics from `fovy` and the image size.

Poses come every step from MuJoCo/MJX (`data.cam_xpos`, `data.cam_xmat`), so fixed cameras and cameras
mounted on a body (the Panda's wrist camera) are handled alike.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np


@dataclasses.dataclass(frozen=True)
class CameraRig:
    names: tuple[str, ...]
    ids: np.ndarray  # [C] int64, indices into the model's cameras
    ks: np.ndarray  # [C, 3, 3] float32 pinhole intrinsics
    height: int
    width: int


def camera_rig(mj_model: mujoco.MjModel, names: tuple[str, ...], height: int, width: int) -> CameraRig:
    """Resolves camera names (empty: every camera of the model, in model order) and their intrinsics."""
    all_names = [mj_model.camera(i).name for i in range(mj_model.ncam)]
    if not names:
        if not all_names:
            raise ValueError("the model has no <camera> elements to render")
        names = tuple(n or f"camera{i}" for i, n in enumerate(all_names))
        ids = list(range(mj_model.ncam))
    else:
        ids = []
        for name in names:
            if name not in all_names:
                raise ValueError(f"unknown camera {name!r}; the model's cameras are {all_names}")
            ids.append(all_names.index(name))
    ids = np.asarray(ids, np.int64)
    if (mj_model.cam_sensorsize[ids] > 0).any():
        bad = [names[i] for i, cid in enumerate(ids) if (mj_model.cam_sensorsize[cid] > 0).any()]
        raise ValueError(f"cameras {bad} set sensorsize/focal; only fovy-based cameras are supported")
    ks = intrinsics_from_fovy(mj_model.cam_fovy[ids], height, width)
    return CameraRig(tuple(names), ids, ks, height, width)


def intrinsics_from_fovy(fovy_deg, height: int, width: int) -> np.ndarray:
    """Pinhole matrices [C, 3, 3] float32 from MuJoCo's vertical field of view (degrees), square pixels.

    Like MuJoCo's own renderer: fy = (H / 2) / tan(fovy / 2), fx = fy, principal point at the image centre
    (pixel centres sit at i + 0.5, as in gsplat).
    """
    fovy = np.asarray(fovy_deg, np.float64).reshape(-1)
    if not ((fovy > 0) & (fovy < 180)).all():
        raise ValueError(f"camera fovy must be in (0, 180) degrees, got {fovy.tolist()}")
    focal = 0.5 * height / np.tan(np.deg2rad(fovy) / 2)
    ks = np.zeros((len(fovy), 3, 3), np.float32)
    ks[:, 0, 0] = focal
    ks[:, 1, 1] = focal
    ks[:, 0, 2] = 0.5 * width
    ks[:, 1, 2] = 0.5 * height
    ks[:, 2, 2] = 1.0
    return ks
