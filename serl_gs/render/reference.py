"""The reference rasterizer: gsplat's forward maths in pure PyTorch, on any device.

It mirrors `gsplat.rasterization(..., packed=True, rasterize_mode="classic", eps2d=0.3)` step by step:
EWA projection with the clamped perspective Jacobian and the 0.3 px^2 low-pass, opacity-aware 3.33-sigma
bounding boxes, tiles, a stable depth sort, front-to-back compositing that skips alpha < 1/255, clamps
alpha at 0.999 and stops a pixel (exclusively) once its transmittance would fall to 1e-4, and SH colour
evaluated from the camera centre (+0.5, clamped at 0). CI and CPU users render with it, and on a GPU it
is the oracle the gsplat backend is checked against.

Two differences that do not change images: the tile side is a parameter (outside a Gaussian's box its
alpha is below 1/255, so which tiles a pixel shares with it does not matter; small tiles waste less work
on a CPU), and gsplat's `sigma < 0` skip is not needed since the conic is positive definite.

Speed on a CPU comes from never forming B x N x H x W tensors: Gaussians are culled by their screen-space
extent first, only (Gaussian, tile) intersections are expanded, and each tile composites its depth-sorted
list in chunks of K Gaussians ([tiles, K, tile pixels] tensors), retiring tiles whose pixels are all done.
"""

from __future__ import annotations

import math

import torch

from serl_gs.render.config import ALPHA_THRESHOLD, EPS2D, MAX_ALPHA, TRANSMITTANCE_THRESHOLD
from serl_gs.render.geometry import quat_to_rotmat
from serl_gs.render.sh import SH_C0

_EXTEND = 3.33  # gsplat's bounding-box half-width in standard deviations
_CHUNK_ELEMENTS = 1 << 20  # tiles x K x pixels per compositing step: ~4 MB tensors, measured fastest on a CPU


def rasterize_reference(
    means: torch.Tensor,  # [B, N, 3] world
    quats: torch.Tensor,  # [B, N, 4] wxyz world
    scales: torch.Tensor,  # [N, 3] activated (exp of log-scales), shared by all envs, or [B, N, 3] per env
    opacities: torch.Tensor,  # [N] activated (sigmoid), shared by all envs
    sh: torch.Tensor,  # [N, K, 3] SH coefficients shared by all envs, or [B, N, K, 3] per env
    viewmats: torch.Tensor,  # [B, C, 4, 4] world-to-camera, OpenCV axes
    ks: torch.Tensor,  # [B, C, 3, 3] pinhole intrinsics
    width: int,
    height: int,
    *,
    sh_degree: int,
    near_plane: float,
    far_plane: float,
    background: torch.Tensor | None = None,  # [3]
    with_depth: bool = False,
    tile_size: int = 16,
    extra: torch.Tensor | None = None,  # [N, E] per-Gaussian features composited like colours (e.g. labels)
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Renders B envs x C cameras. Returns colours [B, C, H, W, 3] float32 (not clamped above, like gsplat)
    and, if asked, expected depth [B, C, H, W] float32 (camera z; 0 where nothing was drawn). With `extra`, the
    colours carry E more channels [B, C, H, W, 3 + E]: alpha-weighted sums of the features, no background."""
    b, n = means.shape[:2]
    c = viewmats.shape[1]
    device = means.device
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    num_tiles = b * c * tiles_x * tiles_y

    proj = _project(means, quats, scales, opacities, viewmats, ks, width, height, near_plane, far_plane)
    colors = _sh_colors(means, sh, viewmats, proj, sh_degree)  # [S, 3]
    if extra is not None:
        colors = torch.cat([colors, extra[proj["gaussian"]].to(colors.dtype)], dim=-1)
    if with_depth:
        colors = torch.cat([colors, proj["depth"][:, None]], dim=-1)  # depth rides along as a 4th channel
    order, counts, offsets = _bin_to_tiles(proj, tile_size, tiles_x, tiles_y, num_tiles)

    channels = colors.shape[-1]
    pixels = tile_size * tile_size
    out = torch.zeros(num_tiles, pixels, channels, dtype=torch.float32, device=device)
    trans = torch.ones(num_tiles, pixels, dtype=torch.float32, device=device)
    _composite(proj, colors, order, counts, offsets, out, trans, tile_size, tiles_x, tiles_y)

    # [B*C*ty*tx, ts*ts, ch] -> [B, C, ty*ts, tx*ts, ch], then crop the partial tiles at the borders.
    image = out.view(b, c, tiles_y, tiles_x, tile_size, tile_size, channels)
    image = image.permute(0, 1, 2, 4, 3, 5, 6)
    image = image.reshape(b, c, tiles_y * tile_size, tiles_x * tile_size, channels)
    image = image[:, :, :height, :width]
    trans_img = trans.view(b, c, tiles_y, tiles_x, tile_size, tile_size).permute(0, 1, 2, 4, 3, 5)
    trans_img = trans_img.reshape(b, c, tiles_y * tile_size, tiles_x * tile_size)[:, :, :height, :width]
    color_channels = 3 + (0 if extra is None else extra.shape[-1])
    rgb = image[..., :color_channels]
    if background is not None:
        bg = background.to(device=device, dtype=torch.float32)
        if extra is None:
            rgb = rgb + trans_img[..., None] * bg
        else:  # the features take no background
            rgb = torch.cat([rgb[..., :3] + trans_img[..., None] * bg, rgb[..., 3:]], -1)
    depth = None
    if with_depth:
        depth = image[..., color_channels] / (1.0 - trans_img).clamp_min(1e-10)  # expected depth, as gsplat's "ED"
    return rgb.contiguous(), depth


def _project(means, quats, scales, opacities, viewmats, ks, width, height, near, far) -> dict:
    """EWA-projects every (env, camera, Gaussian) that can reach the image; returns flat [S] survivors."""
    b, n = means.shape[:2]
    c = viewmats.shape[1]
    rot_w2c, trans_w2c = viewmats[..., :3, :3], viewmats[..., :3, 3]  # [B, C, 3, 3], [B, C, 3]
    means_c = torch.einsum("bcij,bnj->bcni", rot_w2c, means) + trans_w2c[:, :, None]  # [B, C, N, 3]
    z = means_c[..., 2]
    fx, fy = ks[..., 0, 0][..., None], ks[..., 1, 1][..., None]  # [B, C, 1]
    cx, cy = ks[..., 0, 2][..., None], ks[..., 1, 2][..., None]

    # Conservative pre-cull (exact culling follows): the clamped Jacobian's rows have norm at most
    # f / z * sqrt(1 + lim^2), so a 3.33-sigma box is at most 3.33 * sqrt((f/z)^2 (1+lim^2) s_max^2 + eps2d).
    visible_opacity = opacities >= ALPHA_THRESHOLD  # [N]
    s_max = scales.amax(dim=-1)  # [N], or [B, 1, N] per env
    s_max = s_max[:, None] if scales.ndim == 3 else s_max
    lim_x = torch.maximum(width - cx, cx) / fx + 0.3 * 0.5 * width / fx  # [B, C, 1]
    lim_y = torch.maximum(height - cy, cy) / fy + 0.3 * 0.5 * height / fy
    z_safe = z.clamp_min(near)
    jac_norm = torch.maximum(fx * torch.sqrt(1 + lim_x**2), fy * torch.sqrt(1 + lim_y**2)) / z_safe
    bound = _EXTEND * torch.sqrt(jac_norm**2 * s_max**2 + EPS2D) + 1.0  # [B, C, N] pixels
    u = fx * means_c[..., 0] / z_safe + cx
    v = fy * means_c[..., 1] / z_safe + cy
    keep = (z >= near) & (z <= far) & visible_opacity
    keep &= (u + bound > 0) & (u - bound < width) & (v + bound > 0) & (v - bound < height)
    bi, ci, ni = keep.nonzero(as_tuple=True)

    mean_c = means_c[bi, ci, ni]  # [S, 3]
    x, y, zz = mean_c.unbind(-1)
    fx_s, fy_s = ks[bi, ci, 0, 0], ks[bi, ci, 1, 1]
    cx_s, cy_s = ks[bi, ci, 0, 2], ks[bi, ci, 1, 2]

    # Covariance in camera space: W R S S^T R^T W^T with W the view rotation, R the Gaussian's rotation.
    scale = scales[bi, ni] if scales.ndim == 3 else scales[ni]  # [S, 3]
    m = rot_w2c[bi, ci] @ quat_to_rotmat(quats[bi, ni]) * scale[:, None, :]  # [S, 3, 3]
    cov_c = m @ m.transpose(-1, -2)

    # gsplat's persp_proj: the Jacobian is evaluated at x/z, y/z clamped to 1.3x the field of view.
    tan_fovx, tan_fovy = 0.5 * width / fx_s, 0.5 * height / fy_s
    lim_x_pos, lim_x_neg = (width - cx_s) / fx_s + 0.3 * tan_fovx, cx_s / fx_s + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy_s) / fy_s + 0.3 * tan_fovy, cy_s / fy_s + 0.3 * tan_fovy
    rz = 1.0 / zz
    tx = zz * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = zz * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(zz)
    jac = torch.stack(
        [fx_s * rz, zero, -fx_s * tx * rz * rz, zero, fy_s * rz, -fy_s * ty * rz * rz], -1
    ).view(-1, 2, 3)
    cov2d = jac @ cov_c @ jac.transpose(-1, -2)  # [S, 2, 2]
    a = cov2d[:, 0, 0] + EPS2D  # the low-pass filter: every splat covers at least ~1 pixel
    cc = cov2d[:, 1, 1] + EPS2D
    bb = cov2d[:, 0, 1]
    det = a * cc - bb * bb
    mean2d = torch.stack([fx_s * x * rz + cx_s, fy_s * y * rz + cy_s], -1)

    opacity = opacities[ni]
    extend = torch.clamp(torch.sqrt(2.0 * torch.log(opacity / ALPHA_THRESHOLD)), max=_EXTEND)
    radius_x = torch.ceil(extend * torch.sqrt(a))
    radius_y = torch.ceil(extend * torch.sqrt(cc))
    ok = det > 0
    ok &= (radius_x > 0) | (radius_y > 0)
    ok &= (mean2d[:, 0] + radius_x > 0) & (mean2d[:, 0] - radius_x < width)
    ok &= (mean2d[:, 1] + radius_y > 0) & (mean2d[:, 1] - radius_y < height)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conic = torch.stack([cc / det_safe, -bb / det_safe, a / det_safe], -1)  # inverse of [[a, bb], [bb, cc]]
    return {
        "image": (bi * c + ci)[ok],
        "env": bi[ok],
        "camera": ci[ok],
        "gaussian": ni[ok],
        "mean2d": mean2d[ok],
        "conic": conic[ok],
        "opacity": opacity[ok],
        "depth": zz[ok],
        "radius": torch.stack([radius_x, radius_y], -1)[ok],
    }


def _sh_colors(means, sh, viewmats, proj, sh_degree: int) -> torch.Tensor:
    """RGB [S, 3] from SH seen from each camera's centre, +0.5 and clamped at 0 (as gsplat and INRIA)."""
    if sh.ndim == 4:  # per-env colours (randomized): [B, N, K, 3]
        coeffs = sh[proj["env"], proj["gaussian"], : (sh_degree + 1) ** 2]
    else:
        coeffs = sh[proj["gaussian"], : (sh_degree + 1) ** 2]  # [S, K, 3]
    if sh_degree == 0:
        return torch.clamp_min(SH_C0 * coeffs[:, 0] + 0.5, 0.0)
    rot = viewmats[proj["env"], proj["camera"], :3, :3]
    campos = -(rot.transpose(-1, -2) @ viewmats[proj["env"], proj["camera"], :3, 3:])[..., 0]
    dirs = means[proj["env"], proj["gaussian"]] - campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.clamp_min((sh_basis(sh_degree, dirs)[..., None] * coeffs).sum(dim=1) + 0.5, 0.0)


def _bin_to_tiles(proj, tile_size, tiles_x, tiles_y, num_tiles):
    """Expands each projected Gaussian to the tiles its box touches, ordered by (image, tile, depth).

    Returns the Gaussian index of each intersection in that order, and per-tile counts and offsets.
    """
    device = proj["depth"].device
    # Sort the S Gaussians by depth once, then stable-sort the intersections by tile. Stable both times,
    # so Gaussians at equal depth (a plane facing the camera) keep (image, Gaussian id) order, as gsplat's
    # radix sort does: the image of one env does not depend on what else is in the batch.
    by_depth = torch.argsort(proj["depth"], stable=True)
    center = proj["mean2d"][by_depth] / tile_size
    radius = proj["radius"][by_depth] / tile_size
    lo = torch.floor(center - radius).clamp_(min=0)
    hi = torch.ceil(center + radius)
    lo_x, lo_y = lo[:, 0].clamp_(max=tiles_x), lo[:, 1].clamp_(max=tiles_y)
    span_x = (hi[:, 0].clamp(0, tiles_x) - lo_x).clamp_(min=0)  # float32: small integers, exact
    span_y = (hi[:, 1].clamp(0, tiles_y) - lo_y).clamp_(min=0)
    per_gaussian = (span_x * span_y).long()
    row = torch.repeat_interleave(torch.arange(len(by_depth), device=device), per_gaussian)  # [I]
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = (torch.arange(len(row), device=device) - first[row]).float()
    sx = span_x[row]
    dy = torch.floor(local / sx)  # exact for these small integers; cheaper than integer // and %
    dx = local - dy * sx
    base = (proj["image"][by_depth] * tiles_y + lo_y.long()) * tiles_x + lo_x.long()  # first tile, [S]
    tile = base[row] + (dy * tiles_x + dx).long()
    key = tile.int() if num_tiles < 2**31 else tile  # int32 sorts several times faster on a CPU
    tile_sorted, perm = torch.sort(key, stable=True)  # stable: depth order survives within a tile
    bounds = torch.searchsorted(tile_sorted, torch.arange(num_tiles + 1, device=device, dtype=key.dtype))
    counts = bounds[1:] - bounds[:-1]
    return by_depth[row[perm]], counts, bounds[:-1]


def _composite(proj, colors, order, counts, offsets, out, trans, tile_size, tiles_x, tiles_y):
    """Front-to-back alpha compositing of each tile's depth-sorted list, K Gaussians at a time, in place.

    out [tiles, P, ch] and trans [tiles, P] (P = tile_size^2 pixels, row-major) are updated for every tile.
    """
    device = out.device
    active = counts.nonzero(as_tuple=True)[0]
    if len(active) == 0:
        return
    active = active[torch.argsort(counts[active], descending=True)]
    active_counts = counts[active]
    ts = tile_size
    # Per intersection (in tile, depth order): mean x, mean y, then log(alpha) = log(op) - sigma as
    # -a dx^2 - b dx dy - c dy^2 + log(op) (the conic's halves folded in), then colour. The extra last row
    # is a null Gaussian (opacity 0) that pads each tile's last chunk.
    conic = proj["conic"]
    feat = torch.cat(
        [
            proj["mean2d"],
            -0.5 * conic[:, :1],
            -conic[:, 1:2],
            -0.5 * conic[:, 2:3],
            torch.log(proj["opacity"])[:, None],
            colors,
        ],
        dim=1,
    )[order]
    null = torch.zeros(1, feat.shape[1], device=device)
    null[0, 5] = -float("inf")
    feat = torch.cat([feat, null])
    pad_row = len(feat) - 1

    centre = torch.arange(ts, device=device, dtype=torch.float32) + 0.5
    tile_in_image = active % (tiles_x * tiles_y)
    col0 = ((tile_in_image % tiles_x) * ts).float()  # [T] pixel x of each tile's first column
    row0 = ((tile_in_image // tiles_x) * ts).float()
    done = torch.zeros(len(active), ts * ts, dtype=torch.bool, device=device)
    tile_done = torch.zeros(len(active), dtype=torch.bool, device=device)

    start, max_count = 0, int(active_counts[0])
    while start < max_count:
        busy = ((active_counts > start) & ~tile_done).nonzero(as_tuple=True)[0]  # rows of `active`
        if len(busy) == 0:
            break
        tiles = active[busy]
        k = max(4, min(256, _CHUNK_ELEMENTS // (len(busy) * ts * ts)))
        slot = start + torch.arange(k, device=device)  # [K]
        rows = offsets[tiles, None] + slot[None]  # [T, K]
        rows = torch.where(slot[None] < active_counts[busy, None], rows, pad_row)
        f = feat[rows]  # [T, K, F]
        # The tile's pixels split into columns (dx) and rows (dy): the quadratic form is built from
        # [T, K, ts] pieces and only broadcast to [T, K, ts, ts] where it must be.
        dx = f[..., 0, None] - (col0[busy, None, None] + centre)  # [T, K, ts]
        dy = f[..., 1, None] - (row0[busy, None, None] + centre)
        alpha = (f[..., 3, None] * dy)[..., :, None] * dx[..., None, :]  # [T, K, ts (y), ts (x)]
        alpha += (f[..., 2, None] * dx * dx)[..., None, :]
        alpha += (f[..., 4, None] * dy * dy + f[..., 5, None])[..., :, None]  # log(op) - sigma
        alpha = alpha.exp_().clamp_(max=MAX_ALPHA).flatten(2)  # [T, K, P]
        alpha.masked_fill_(alpha < ALPHA_THRESHOLD, 0.0)

        t0 = trans[tiles]  # [T, P]
        live = ~done[busy]
        t_after = torch.cumprod(1.0 - alpha, dim=1)  # [T, K, P]
        t_after *= (t0 * live)[:, None]  # a finished pixel composites nothing more
        # A pixel takes a Gaussian only while the transmittance after it stays above 1e-4; the first one
        # that would cross it ends the pixel and is itself excluded. T only falls, so that is a prefix.
        take = t_after > TRANSMITTANCE_THRESHOLD
        weight = torch.div(t_after, 1.0 - alpha).mul_(alpha).mul_(take)  # alpha * T_before
        out[tiles] += torch.bmm(weight.transpose(1, 2), f[..., 6:])  # [T, P, ch]

        t_last = t_after[:, -1]
        new_t = torch.where(live, t_last, t0)
        ended = live & (t_last <= TRANSMITTANCE_THRESHOLD)  # pixels that finished inside this chunk
        if bool(ended.any()):
            ti, pi = ended.nonzero(as_tuple=True)
            before_end = torch.where(take[ti, :, pi], t_after[ti, :, pi], torch.inf).amin(dim=1)
            new_t[ti, pi] = torch.where(before_end < torch.inf, before_end, t0[ti, pi])
            done[busy[ti], pi] = True
            tile_done[busy] = done[busy].all(dim=1)
        trans[tiles] = new_t
        start += k


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real SH basis [..., (degree+1)^2] at unit directions [..., 3], in the 3DGS/gsplat order and signs."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.31539156525252005 * (2.0 * zz - xx - yy),
            -1.0925484305920792 * xz,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * xy * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    if degree > 3:
        raise ValueError(f"SH degree must be 0-3, got {degree}")
    return torch.stack(out, -1)

