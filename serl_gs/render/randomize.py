"""Visual randomization inside the render stage: each env's drawn values (serl_gs.randomize.VisualDraw) applied to
its Gaussians' colours, its cameras and its image, all envs in the same batched call.

- Body groups (serl_gs.randomize.GROUPS) label every Gaussian once per scene: Gaussians on a body with a free
  joint (and its subtree) are "object", on any other moving body "robot"; the world's are "table" inside the
  box of a world geom whose name contains "table" (2 cm margin), else "background". The labels are both the
  units of colour randomization and the segmentation classes.
- Colour: rgb' = M rgb + o per env and group is applied to SH coefficients, every band mixed by M and the offset
  added to the DC term, which is exact for any SH degree (the renderer's clamp at 0 comes after, as without it).
- Cameras: the offset moves the camera centre in the world, the rotation turns it in its own frame; focal length
  and principal point change the intrinsics of that env's camera only.
- Object size: the object group's Gaussians (positions in their body's frame, and their scales) are scaled about
  the body's origin per env, so each env's rasterization takes its own [B, N, 3] scales.
- Distractors: copies of the object group's Gaussians (at the model's rest pose) in PALETTE colours, turned and
  moved per env on the table near the object, appended to that env's Gaussians (labelled background: they are not
  the task's object); render only.
- Image: a separable Gaussian blur of the env's width (radius 4 px at most) and Gaussian noise from a counter-based
  hash of (env seed, pixel), so an env's noise does not depend on the other envs of the batch.
"""

from __future__ import annotations

import dataclasses
import math

import mujoco
import numpy as np
import torch

from serl_gs.randomize import GROUPS, LUMA, PALETTE
from serl_gs.render.geometry import pose_gaussians, quat_multiply, quat_rotate
from serl_gs.render.scene import GaussianScene
from serl_gs.render.sh import SH_C0

TABLE_MARGIN = 0.02  # metres around a table geom's box that still count as table (splats' extent)


def body_groups(mj_model: mujoco.MjModel, scene: GaussianScene) -> np.ndarray:
    """Group id (index into GROUPS) of every Gaussian [N] int64."""
    m = mj_model
    free = {int(m.jnt_bodyid[j]) for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE}
    body_group = np.full(m.nbody, GROUPS.index("robot"), np.int64)
    body_group[0] = GROUPS.index("background")
    for b in range(1, m.nbody):
        a = b
        while a != 0:  # a body under a free-joint body moves with the object
            if a in free:
                body_group[b] = GROUPS.index("object")
                break
            a = int(m.body_parentid[a])
    groups = body_group[scene.body_ids]
    world = np.flatnonzero(scene.body_ids == 0)
    points = scene.means[world].astype(np.float64)
    table = np.zeros(len(world), bool)
    for g in range(m.ngeom):
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
        if m.geom_bodyid[g] != 0 or "table" not in name.lower():
            continue
        rot = _quat_to_matrix(m.geom_quat[g])
        centre, half = m.geom_aabb[g, :3], m.geom_aabb[g, 3:]
        if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE:  # MuJoCo's box of a plane is infinite; its size is not
            size = m.geom_size[g]
            centre, half = np.zeros(3), np.array([size[0] or np.inf, size[1] or np.inf, 0.0])
        local = (points - m.geom_pos[g]) @ rot - centre  # into the geom's frame, box-centred
        table |= np.all(np.abs(local) <= half + TABLE_MARGIN, axis=1)
    groups[world[table]] = GROUPS.index("table")
    return groups


def group_luma(scene: GaussianScene, groups: np.ndarray) -> np.ndarray:
    """Mean luma of each group's base colour [G] float32 (1 for an empty group): what a new appearance keeps
    the texture relative to."""
    rgb = SH_C0 * scene.sh[:, 0] + 0.5
    luma = np.clip(rgb, 0, 1) @ np.asarray(LUMA)
    out = np.ones(len(GROUPS), np.float32)
    for g in range(len(GROUPS)):
        if (groups == g).any():
            out[g] = max(float(luma[groups == g].mean()), 1e-3)
    return out


def recolour_sh(sh: torch.Tensor, groups: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Per-env SH [B, N, K, 3] from shared SH [N, K, 3], groups [N], matrix [B, G, 3, 3], offset [B, G, 3]."""
    m = matrix[:, groups]  # [B, N, 3, 3]
    out = torch.einsum("bnij,nkj->bnki", m, sh)
    # rgb = SH_C0 dc + rest + 0.5 -> M rgb + o = SH_C0 (M dc) + M rest + (M 0.5 + o): the constant goes to dc.
    const = 0.5 * m.sum(-1) + offset[:, groups] - 0.5  # [B, N, 3]
    out[:, :, 0] += const / SH_C0
    return out


def scale_objects(means: torch.Tensor, scales: torch.Tensor, groups: torch.Tensor, object_scale: torch.Tensor):
    """Per-env body-frame means and scales [B, N, 3] from shared ones [N, 3]: the object group's Gaussians scaled
    by object_scale [B] about their body's origin (the means are in the body frame), as the physics scales the
    object bodies' geoms (serl_gs.physics_randomize); the other groups' rows are the shared ones times 1, exactly."""
    factor = torch.where(groups == GROUPS.index("object"), object_scale[:, None], 1.0)[..., None]  # [B, N, 1]
    return means * factor, scales * factor


@dataclasses.dataclass(frozen=True)
class DistractorTemplate:
    """The object group's Gaussians at the model's rest pose (key 0, else qpos0), in the world frame minus the
    objects' rest centre in x and y (so copies stand on the table at the object's height), activated."""

    means: torch.Tensor  # [M, 3]
    quats: torch.Tensor  # [M, 4] wxyz, world
    scales: torch.Tensor  # [M, 3]
    opacities: torch.Tensor  # [M]
    sh: torch.Tensor  # [M, K, 3]
    centre: torch.Tensor  # [3]: the object bodies' mean rest position in x, y; 0 in z
    luma: float  # mean luma of the template's base colours: a copy's colour keeps its texture relative to it


def distractor_template(mj_model: mujoco.MjModel, groups: np.ndarray, body_ids, means, quats, scales, opacities, sh):
    """The template of distractor copies from the scene's activated tensors [N, ...] (one device)."""
    from serl_gs.render.poses import poses_from_qpos

    index = np.flatnonzero(groups == GROUPS.index("object"))
    if not index.size:
        raise ValueError("distractors are copies of the scene's object (Gaussians on a free-joint body), and this "
                         "scene has none; set distractors=0")  # fmt: skip
    dev = means.device
    rows = torch.as_tensor(index, device=dev)
    qpos = mj_model.key_qpos[:1] if mj_model.nkey else mj_model.qpos0[None]
    xpos, xquat = (torch.as_tensor(a, dtype=torch.float32, device=dev) for a in poses_from_qpos(mj_model, qpos)[:2])
    world, rot = pose_gaussians(means[rows], quats[rows], body_ids[rows], xpos, xquat)
    bodies = torch.unique(body_ids[rows])
    centre = torch.cat([xpos[0, bodies, :2].mean(0), torch.zeros(1, device=dev)])
    rgb = (SH_C0 * sh[rows, 0] + 0.5).clamp(0, 1)
    luma = float((rgb @ torch.tensor(LUMA, device=dev)).mean().clamp_min(1e-3))
    return DistractorTemplate(world[0] - centre, rot[0], scales[rows], opacities[rows], sh[rows], centre, luma)


HIDDEN_DEPTH = 1e6  # metres below the world: where copies that are not there this episode go (culled, never drawn)


def add_distractors(template: DistractorTemplate, means, quats, scales, opacities, sh, visual: dict):
    """Each env's D copies of the template (M Gaussians each) appended to its Gaussians: world means [B, N, 3] and
    quats [B, N, 4], scales [N or B, N, 3], opacities [N], SH [B, N, K, 3]. A copy is turned by its yaw about
    the vertical through the centre, moved by its (x, y), and recoloured to its PALETTE colour times each
    Gaussian's relative luma; copies not there this episode are moved far below (opacities are shared by all
    envs in gsplat, so they cannot hide one env's copy). Returns the extended tensors and D * M."""
    xy, yaw, colour, visible = (visual[k] for k in ("distractor_xy", "distractor_yaw", "distractor_colour",
                                                     "distractor_visible"))  # fmt: skip
    b, d = yaw.shape
    m = template.means.shape[0]
    zero = torch.zeros_like(yaw)
    turn = torch.stack([torch.cos(yaw / 2), zero, zero, torch.sin(yaw / 2)], -1)[:, :, None].expand(b, d, m, 4)
    place = torch.cat([xy, ((visible - 1) * HIDDEN_DEPTH)[..., None]], -1) + template.centre  # [B, D, 3]
    new_means = quat_rotate(turn, template.means.expand(b, d, m, 3)) + place[:, :, None]
    new_quats = quat_multiply(turn, template.quats.expand(b, d, m, 4))
    copies = template.scales.repeat(d, 1)  # [D * M, 3]
    scales = torch.cat([scales, copies]) if scales.ndim == 2 else torch.cat([scales, copies.expand(b, -1, -1)], 1)
    palette = torch.tensor(PALETTE, dtype=torch.float32, device=yaw.device)[colour]  # [B, D, 3]
    luma = torch.tensor(LUMA, dtype=torch.float32, device=yaw.device)
    matrix = palette[..., :, None] * luma / template.luma  # rgb' = colour * luma(rgb) / template luma
    slot = torch.arange(d, device=yaw.device).repeat_interleave(m)
    new_sh = recolour_sh(template.sh.repeat(d, 1, 1), slot, matrix, torch.zeros(b, d, 3, device=yaw.device))
    return (
        torch.cat([means, new_means.reshape(b, d * m, 3)], 1),
        torch.cat([quats, new_quats.reshape(b, d * m, 4)], 1),
        scales,
        torch.cat([opacities, template.opacities.repeat(d)]),
        torch.cat([sh.expand(b, *sh.shape[-3:]), new_sh], 1),
        d * m,
    )


def jitter_cameras(cpos, cmat, ks, offset, rotation, focal_scale, principal_shift):
    """cpos [B, C, 3], cmat [B, C, 3, 3] (MuJoCo camera axes as columns), ks [B, C, 3, 3] -> jittered copies."""
    cpos = cpos + offset
    cmat = cmat @ rotation
    ks = ks.clone()
    ks[..., 0, 0] *= focal_scale
    ks[..., 1, 1] *= focal_scale
    ks[..., 0, 2] += principal_shift[..., 0]
    ks[..., 1, 2] += principal_shift[..., 1]
    return cpos, cmat, ks


def degrade(rgb: torch.Tensor, blur_sigma: torch.Tensor, noise_std: torch.Tensor, noise_seed: torch.Tensor):
    """rgb [B, C, H, W, 3] float -> blurred (sigma [B] px) and noisy (std [B], seed [B] int) colours."""
    if bool((blur_sigma > 0).any()):
        rgb = _blur(rgb, blur_sigma)
    if bool((noise_std > 0).any()):
        b = rgb.shape[0]
        index = torch.arange(rgb[0].numel(), device=rgb.device, dtype=torch.int64).view(rgb.shape[1:])
        noise = _gaussian_hash(noise_seed.to(torch.int64).view(b, 1, 1, 1, 1), index)
        rgb = rgb + noise_std.view(b, 1, 1, 1, 1) * noise
    return rgb


def _blur(rgb: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    radius = 4
    taps = torch.arange(-radius, radius + 1, device=rgb.device, dtype=torch.float32)  # [T]
    s = sigma.clamp_min(1e-3)[:, None]
    w = torch.exp(-0.5 * (taps[None] / s) ** 2)
    w = torch.where(sigma[:, None] > 0.05, w, (taps[None] == 0).float())  # sigma ~0: no blur at all
    w = (w / w.sum(1, keepdim=True)).view(-1, 1, 1, 1, 1, len(taps))  # [B, 1, 1, 1, 1, T]
    for dim in (2, 3):  # H, then W; borders replicate
        x = rgb.movedim(dim, -1)  # [..., L]
        padded = torch.cat([x[..., :1].expand(*x.shape[:-1], radius), x, x[..., -1:].expand(*x.shape[:-1], radius)], -1)
        windows = padded.unfold(-1, 2 * radius + 1, 1)  # [..., L, T]
        rgb = (windows * w).sum(-1).movedim(-1, dim)
    return rgb


def _gaussian_hash(seed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal values from a counter-based hash of (seed, index): Box-Muller over two 24-bit uniforms."""
    u1 = (_mix(seed * 2654435761 + index * 2 + 1) + 0.5) / 16777216.0
    u2 = (_mix(seed * 2654435761 + index * 2 + 2) + 0.5) / 16777216.0
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32) of int64 counters; returns floats in [0, 2^24)."""
    x = x & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    x = ((x ^ (x >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return (x >> 8).to(torch.float32)


def _quat_to_matrix(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
