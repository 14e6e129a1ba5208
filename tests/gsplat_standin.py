"""A CPU stand-in for gsplat 1.5.3's compiled ops, so gsplat's real Python runs in CI and in dry runs.

gsplat reaches its CUDA kernels only through `from ._backend import _C`, done at call time inside
`gsplat/cuda/_wrapper.py`. `install()` puts a module whose `_C` holds the functions below at
`sys.modules["gsplat.cuda._backend"]`: `gsplat.rasterization` then runs unchanged (its asserts, reshapes,
packing, SH gathering, channel padding, expected-depth division) on CPU torch, and the real `_backend`,
which would start an nvcc build, is never imported.

Covered: what `rasterization(..., packed=True, rasterize_mode="classic")` calls for 3DGS, forward only:
`projection_ewa_3dgs_packed_fwd`, `spherical_harmonics_fwd`, `intersect_tile`, `intersect_offset`,
`rasterize_to_pixels_3dgs_fwd` and the `CameraModelType` enum. Each returns what its kernel in
`gsplat/cuda/csrc` returns (shapes, dtypes, packed order, culling rules) and refuses what the real one
cannot do (non-contiguous inputs, launch sizes beyond CUDA's limits) instead of drawing garbage. The maths
is serl_gs/render/reference.py's: projection and SH are written out here in the kernels' terms, the
compositing is the reference's own `_composite`. Any other op raises naming itself.

    from tests.gsplat_standin import install
    standin = install(monkeypatch)   # in a test; standin.calls lists (op, sizes) per call
"""

from __future__ import annotations

import enum
import math
import sys
import types

import torch

from serl_gs.render.config import ALPHA_THRESHOLD
from serl_gs.render.geometry import quat_to_rotmat
from serl_gs.render.reference import _composite, sh_basis

MAX_GRID_Y = 65_535  # CUDA's gridDim.y limit; the packed projection launches B*C rows of blocks there
_EXTEND = 3.33
_CHANNELS = (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513)  # kernel instances


class CameraModelType(enum.IntEnum):  # ext.cpp's py::enum_, values exported to the module as well
    PINHOLE = 0
    ORTHO = 1
    FISHEYE = 2
    FTHETA = 3


class StandinOps:
    """The `_C` module: the five ops, the enum, and `calls`, a record of (op name, sizes) per call."""

    CameraModelType = CameraModelType
    PINHOLE, ORTHO, FISHEYE, FTHETA = CameraModelType

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):  # only reached for names not defined here
        raise NotImplementedError(f"gsplat CPU stand-in: compiled op {name!r} is not covered")

    # ---- projection (ProjectionEWA3DGSPacked.cu) ---------------------------------------------------------
    def projection_ewa_3dgs_packed_fwd(
        self, means, covars, quats, scales, opacities, viewmats, ks, width, height,
        eps2d, near_plane, far_plane, radius_clip, calc_compensations, camera_model,
    ):  # fmt: skip
        _check_input(means=means, quats=quats, scales=scales, viewmats=viewmats, Ks=ks)
        if covars is not None or quats is None or scales is None:
            raise NotImplementedError("gsplat CPU stand-in: projection from covars is not covered")
        if camera_model != CameraModelType.PINHOLE:
            raise NotImplementedError(f"gsplat CPU stand-in: camera model {camera_model!r} is not covered")
        n, c = means.shape[-2], viewmats.shape[-3]
        b = means.numel() // (n * 3)
        self.calls.append(("projection_ewa_3dgs_packed_fwd", {"B": b, "C": c, "N": n}))
        if b * c > MAX_GRID_Y:  # the real launch fails and gsplat reads nnz from uninitialised memory
            raise RuntimeError(f"projection_ewa_3dgs_packed_fwd: grid.y = B*C = {b * c} exceeds {MAX_GRID_Y}")
        means, quats, scales = means.reshape(b, n, 3), quats.reshape(b, n, 4), scales.reshape(b, n, 3)
        viewmats, ks = viewmats.reshape(b, c, 4, 4), ks.reshape(b, c, 3, 3)

        rot, trans = viewmats[..., :3, :3], viewmats[..., :3, 3]
        means_c = torch.einsum("bcij,bnj->bcni", rot, means) + trans[:, :, None]  # [B, C, N, 3]
        z = means_c[..., 2]
        bi, ci, ni = ((z >= near_plane) & (z <= far_plane)).nonzero(as_tuple=True)  # row-major: packed order
        x, y, zz = means_c[bi, ci, ni].unbind(-1)
        m = rot[bi, ci] @ quat_to_rotmat(quats[bi, ni]) * scales[bi, ni][:, None, :]
        cov_c = m @ m.transpose(-1, -2)
        fx, fy, cx, cy = ks[bi, ci, 0, 0], ks[bi, ci, 1, 1], ks[bi, ci, 0, 2], ks[bi, ci, 1, 2]
        tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
        rz = 1.0 / zz
        tx = zz * torch.minimum((width - cx) / fx + 0.3 * tan_fovx, torch.maximum(-(cx / fx + 0.3 * tan_fovx), x * rz))
        ty = zz * torch.minimum((height - cy) / fy + 0.3 * tan_fovy, torch.maximum(-(cy / fy + 0.3 * tan_fovy), y * rz))
        zero = torch.zeros_like(zz)
        jac = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1).view(-1, 2, 3)
        cov2d = jac @ cov_c @ jac.transpose(-1, -2)
        det_orig = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
        a, bb, cc = cov2d[:, 0, 0] + eps2d, cov2d[:, 0, 1], cov2d[:, 1, 1] + eps2d
        det = a * cc - bb * bb
        compensation = torch.sqrt(torch.clamp_min(det_orig / det, 0.0))
        mean2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

        valid = det > 0
        extend = torch.full_like(zz, _EXTEND)
        if opacities is not None:
            _check_input(opacities=opacities)
            # The kernel reads opacities[gid], i.e. the first batch row's, whatever the env: exact here only
            # because our envs share one scene. Mirrored so a per-env opacity would show the same bug.
            opacity = opacities.reshape(-1)[ni]
            if calc_compensations:
                opacity = opacity * compensation
            valid &= opacity >= ALPHA_THRESHOLD
            extend = torch.clamp(torch.sqrt(2.0 * torch.log(opacity / ALPHA_THRESHOLD)), max=_EXTEND)
        radius_x, radius_y = torch.ceil(extend * torch.sqrt(a)), torch.ceil(extend * torch.sqrt(cc))
        valid &= (radius_x > radius_clip) | (radius_y > radius_clip)
        valid &= (mean2d[:, 0] + radius_x > 0) & (mean2d[:, 0] - radius_x < width)
        valid &= (mean2d[:, 1] + radius_y > 0) & (mean2d[:, 1] - radius_y < height)
        nnz = int(valid.sum())
        if nnz >= 2**31:
            raise RuntimeError(f"projection_ewa_3dgs_packed_fwd: nnz = {nnz} overflows the kernel's int32 counts")
        det_safe = torch.where(valid, det, torch.ones_like(det))
        conics = torch.stack([cc / det_safe, -bb / det_safe, a / det_safe], -1)
        rows = bi * c + ci
        indptr = torch.zeros(b * c + 1, dtype=torch.int32)
        indptr[1:] = torch.cumsum(torch.bincount(rows[valid], minlength=b * c), 0)
        return (
            indptr,
            bi[valid],
            ci[valid],
            ni[valid],
            torch.stack([radius_x, radius_y], -1)[valid].to(torch.int32),
            mean2d[valid].contiguous(),
            zz[valid].contiguous(),
            conics[valid].contiguous(),
            compensation[valid].contiguous() if calc_compensations else None,
        )

    # ---- spherical harmonics (SphericalHarmonicsCUDA.cu) -------------------------------------------------
    def spherical_harmonics_fwd(self, degrees_to_use, dirs, coeffs, masks):
        _check_input(dirs=dirs, coeffs=coeffs)
        self.calls.append(("spherical_harmonics_fwd", {"elements": dirs.numel() // 3, "K": coeffs.shape[-2]}))
        unit = dirs / dirs.norm(dim=-1, keepdim=True)
        colors = (sh_basis(degrees_to_use, unit)[..., None] * coeffs[..., : (degrees_to_use + 1) ** 2, :]).sum(-2)
        if masks is not None:  # the kernel leaves masked entries unwritten (torch.empty): NaN makes any use show
            _check_input(masks=masks)
            colors = torch.where(masks[..., None], colors, torch.nan)
        return colors

    # ---- tile intersection (IntersectTile.cu, Intersect.cpp) ---------------------------------------------
    def intersect_tile(
        self, means2d, radii, depths, image_ids, gaussian_ids, n_images, tile_size, tile_width, tile_height,
        sort, segmented,
    ):  # fmt: skip
        _check_input(means2d=means2d, radii=radii, depths=depths)
        packed = means2d.dim() == 2
        n_tiles = tile_width * tile_height
        image_bits, tile_bits = _bits(n_images), _bits(n_tiles)
        if image_bits + tile_bits > 32:
            raise RuntimeError(f"intersect_tile: image ({image_bits}) + tile ({tile_bits}) bits exceed 32")
        m2d, rad, dep = means2d.reshape(-1, 2), radii.reshape(-1, 2).float(), depths.reshape(-1)
        if packed:
            if image_ids is None or gaussian_ids is None:
                raise RuntimeError("When packed is set, image_ids and gaussian_ids must be provided.")
            _check_input(image_ids=image_ids, gaussian_ids=gaussian_ids)
            iid = image_ids
        else:
            iid = torch.arange(len(dep)) // means2d.shape[-2]
        self.calls.append(("intersect_tile", {"elements": len(dep), "I": n_images}))
        valid = (rad[:, 0] > 0) & (rad[:, 1] > 0)
        centre, r = m2d / tile_size, rad / tile_size
        lo = torch.floor(centre - r).clamp(min=0)  # the kernel's float -> uint32 casts saturate at 0
        hi = torch.ceil(centre + r).clamp(min=0)
        lo_x, hi_x = lo[:, 0].clamp(max=tile_width).long(), hi[:, 0].clamp(max=tile_width).long()
        lo_y, hi_y = lo[:, 1].clamp(max=tile_height).long(), hi[:, 1].clamp(max=tile_height).long()
        per = torch.where(valid, (hi_y - lo_y) * (hi_x - lo_x), 0)
        tiles_per_gauss = per.to(torch.int32).reshape(depths.shape)
        # Row-major enumeration of each Gaussian's tile rectangle, Gaussians in input order (as the kernel).
        row = torch.repeat_interleave(torch.arange(len(per)), per)
        local = torch.arange(len(row)) - (torch.cumsum(per, 0) - per)[row]
        span_x = (hi_x - lo_x)[row]
        tile = (lo_y[row] + local // span_x.clamp(min=1)) * tile_width + lo_x[row] + local % span_x.clamp(min=1)
        depth_bits = dep.contiguous().view(torch.int32).long() & 0xFFFFFFFF  # float bits, zero-extended
        isect_ids = (iid[row].long() << (32 + tile_bits)) | (tile << 32) | depth_bits[row]
        flatten_ids = row.to(torch.int32)
        if sort and len(isect_ids):  # cub's radix sort is stable: equal keys keep input order
            isect_ids, perm = torch.sort(isect_ids, stable=True)
            flatten_ids = flatten_ids[perm]
        return tiles_per_gauss, isect_ids, flatten_ids

    def intersect_offset(self, isect_ids, n_images, tile_width, tile_height):
        _check_input(isect_ids=isect_ids)
        n_tiles = tile_width * tile_height
        tile_bits = _bits(n_tiles)
        key = isect_ids >> 32
        image_tile = (key >> tile_bits) * n_tiles + (key & ((1 << tile_bits) - 1))
        offsets = torch.searchsorted(image_tile, torch.arange(n_images * n_tiles))  # first isect of each tile
        return offsets.to(torch.int32).reshape(n_images, tile_height, tile_width)

    # ---- rasterization (RasterizeToPixels3DGSFwd.cu) -----------------------------------------------------
    def rasterize_to_pixels_3dgs_fwd(
        self, means2d, conics, colors, opacities, backgrounds, masks, width, height, tile_size, tile_offsets,
        flatten_ids,
    ):  # fmt: skip
        _check_input(
            means2d=means2d, conics=conics, colors=colors, opacities=opacities, tile_offsets=tile_offsets,
            flatten_ids=flatten_ids,
        )  # fmt: skip
        if masks is not None:
            raise NotImplementedError("gsplat CPU stand-in: tile masks are not covered")
        channels = colors.shape[-1]
        if channels not in _CHANNELS:
            raise RuntimeError(f"Unsupported number of channels: {channels}")
        image_dims = tuple(tile_offsets.shape[:-2])
        tiles_y, tiles_x = tile_offsets.shape[-2:]
        n_images = math.prod(image_dims)
        self.calls.append(("rasterize_to_pixels_3dgs_fwd", {"I": n_images, "H": height, "W": width, "ch": channels}))
        starts = tile_offsets.reshape(-1).long()
        ends = torch.cat([starts[1:], torch.tensor([len(flatten_ids)])])
        proj = {"mean2d": means2d.reshape(-1, 2), "conic": conics.reshape(-1, 3), "opacity": opacities.reshape(-1)}
        num_tiles = n_images * tiles_y * tiles_x
        out = torch.zeros(num_tiles, tile_size * tile_size, channels)
        trans = torch.ones(num_tiles, tile_size * tile_size)
        _composite(
            proj, colors.reshape(-1, channels), flatten_ids.long(), ends - starts, starts, out, trans,
            tile_size, tiles_x, tiles_y,
        )  # fmt: skip
        image = out.view(n_images, tiles_y, tiles_x, tile_size, tile_size, channels).permute(0, 1, 3, 2, 4, 5)
        image = image.reshape(n_images, tiles_y * tile_size, tiles_x * tile_size, channels)[:, :height, :width]
        t = trans.view(n_images, tiles_y, tiles_x, tile_size, tile_size).permute(0, 1, 3, 2, 4)
        t = t.reshape(n_images, tiles_y * tile_size, tiles_x * tile_size)[:, :height, :width, None]
        if backgrounds is not None:
            _check_input(backgrounds=backgrounds)
            image = image + t * backgrounds.reshape(n_images, 1, 1, channels)
        return (
            image.reshape(image_dims + (height, width, channels)).contiguous(),
            (1.0 - t).reshape(image_dims + (height, width, 1)).contiguous(),
            torch.zeros(image_dims + (height, width), dtype=torch.int32),  # last_ids: only the backward reads them
        )


def _bits(n: int) -> int:
    return int(math.floor(math.log2(n))) + 1


def _check_input(**tensors):
    """CHECK_INPUT's contiguity half (the CUDA half cannot hold on a CPU)."""
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise RuntimeError(f"{name} must be contiguous")


def install(monkeypatch) -> StandinOps:
    """Makes gsplat's compiled-op entry point (`gsplat.cuda._backend._C`) the stand-in until the test ends."""
    import gsplat.cuda  # the package only; its `_backend` (the nvcc build) is what gets replaced

    ops = StandinOps()
    module = types.ModuleType("gsplat.cuda._backend")
    module._C = ops
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", module)
    monkeypatch.setattr(gsplat.cuda, "_backend", module, raising=False)
    return ops


class _Patch:
    """A minimal monkeypatch for use outside pytest (dry runs): setitem/setattr, undone by `undo()`."""

    def __init__(self):
        self._undo = []

    def setitem(self, mapping, key, value):
        old = mapping.get(key, _MISSING)
        self._undo.append(lambda: mapping.pop(key, None) if old is _MISSING else mapping.__setitem__(key, old))
        mapping[key] = value

    def setattr(self, obj, name, value, raising=True):
        old = getattr(obj, name, _MISSING)
        self._undo.append(lambda: delattr(obj, name) if old is _MISSING else setattr(obj, name, old))
        setattr(obj, name, value)

    def undo(self):
        while self._undo:
            self._undo.pop()()


_MISSING = object()


def install_for_process() -> tuple[StandinOps, _Patch]:
    """`install` outside pytest; call `.undo()` on the second value to restore gsplat's own backend."""
    patch = _Patch()
    return install(patch), patch
