"""Torch geometry shared by both backends: quaternions, posing Gaussians on bodies, MuJoCo cameras."""

from __future__ import annotations

import torch


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """wxyz quaternions [..., 4] (normalised here, as gsplat does) -> rotation matrices [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(q.shape[:-1] + (3, 3))  # fmt: skip


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of wxyz quaternions, broadcasting over leading dims."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotates vectors v [..., 3] by unit wxyz quaternions q [..., 4]: v + 2w (u x v) + 2 u x (u x v)."""
    w, u = q[..., :1], q[..., 1:]
    uv = torch.linalg.cross(u, v, dim=-1)
    return v + 2.0 * (w * uv + torch.linalg.cross(u, uv, dim=-1))


def pose_gaussians(
    means: torch.Tensor,  # [N, 3] body frame
    quats: torch.Tensor,  # [N, 4] wxyz, body frame
    body_ids: torch.Tensor,  # [N] int64
    body_xpos: torch.Tensor,  # [B, nbody, 3] world
    body_xquat: torch.Tensor,  # [B, nbody, 4] wxyz world
) -> tuple[torch.Tensor, torch.Tensor]:
    """World means [B, N, 3] and rotations [B, N, 4]: mean_w = R(xquat) mean + xpos, rot_w = xquat * rot.

    Works on quaternions, never on [B, N, 3, 3] matrices: with thousands of envs that is the memory bound.
    """
    body_q = body_xquat / body_xquat.norm(dim=-1, keepdim=True)
    q = body_q[:, body_ids]  # [B, N, 4]
    means_w = quat_rotate(q, means.expand_as(q[..., 1:])) + body_xpos[:, body_ids]
    return means_w, quat_multiply(q, quats[None])


def viewmats_from_mujoco(
    cam_xpos: torch.Tensor,  # [B, C, 3] world
    cam_xmat: torch.Tensor,  # [B, C, 3, 3] camera-to-world rotation, MuJoCo axes
) -> torch.Tensor:
    """World-to-camera 4x4 matrices [B, C, 4, 4] in the OpenCV convention gsplat uses.

    A MuJoCo camera looks along its local -z with +y up; OpenCV's looks along +z with +y down, so the
    camera's y and z axes flip: R_cv = xmat @ diag(1, -1, -1), and the view matrix inverts [R_cv | xpos].
    """
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=cam_xmat.dtype, device=cam_xmat.device)
    rot_c2w = cam_xmat * flip  # scales columns
    rot_w2c = rot_c2w.transpose(-1, -2)
    view = torch.zeros(cam_xpos.shape[:-1] + (4, 4), dtype=cam_xpos.dtype, device=cam_xpos.device)
    view[..., :3, :3] = rot_w2c
    view[..., :3, 3] = -(rot_w2c @ cam_xpos[..., None])[..., 0]
    view[..., 3, 3] = 1.0
    return view
