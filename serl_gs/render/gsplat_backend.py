"""The gsplat backend: every env's every camera through `gsplat.rasterization`, in as few calls as fit.

gsplat compiles its CUDA code on first use, so it is imported here lazily, inside the functions, and only
once a CUDA device is asked for or gsplat's compiled ops are already loaded: nothing on a CPU path builds
it. Written against gsplat 1.5.3: `rasterization(means [..., N, 3], quats [..., N, 4] wxyz, scales
[..., N, 3], opacities [..., N], colors [..., N, K, 3] SH, viewmats [..., C, 4, 4] world-to-camera,
Ks [..., C, 3, 3], width, height, ...)` with the env batch as the leading `...` dimension, packed=True.

Two things gsplat 1.5.3 does not do for us:
- `backgrounds` with packed=True fails its own assertion (gsplat issues #764, #826): the background is
  composited here as (1 - alpha) * bg, which is exactly what the kernel adds (T * bg, alpha = 1 - T).
- The packed projection launches B*C rows of blocks in CUDA's grid.y, at most 65,535 (beyond it the launch
  fails and gsplat reads a garbage count), and its intermediates grow with B*C*N: envs are rendered in
  chunks that fit both (`envs_per_call`).
"""

from __future__ import annotations

import sys

import torch

from serl_gs.render.config import EPS2D

GRID_Y_LIMIT = 65_535  # CUDA's gridDim.y limit
MEMORY_FRACTION = 0.5  # of the free device memory one call may plan to use; the rest is margin


def ops_loaded() -> bool:
    """Whether gsplat's compiled ops are already imported in this process (so using them builds nothing)."""
    backend = sys.modules.get("gsplat.cuda._backend")
    return backend is not None and getattr(backend, "_C", None) is not None


def gsplat_reachable(device: torch.device) -> tuple[bool, str]:
    """Whether trying gsplat on `device` makes sense at all, without building or running anything.

    CUDA devices: torch must see CUDA and gsplat must import. Other devices: only when gsplat's ops are
    already loaded (a CPU port, or the tests' stand-in); gsplat's own kernels are CUDA-only.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device"
    elif not ops_loaded():
        return False, f"torch sees no CUDA device (gsplat's kernels are CUDA-only; device is {device})"
    try:
        import gsplat
    except ImportError as err:
        return False, f"gsplat does not import: {err}"
    return True, f"gsplat {getattr(gsplat, '__version__', '?')}"


def bytes_per_env(cameras: int, gaussians: int, sh_coeffs: int, height: int, width: int) -> int:
    """Device memory one env may need during a call, if every Gaussian were seen by every camera.

    Per Gaussian: posed means/rotations and gsplat's contiguous copies of scales/opacities (~110 B). Per
    (camera, Gaussian) seen: packed projection outputs and ids (~56 B), gathered opacities, SH coefficients,
    directions and colours (~100 B + 12 B per coefficient), tile intersections with their sort buffers
    (~108 B at 4 tiles each). Per pixel: colours, alphas, last ids and our uint8 and float copies (~48 B).
    """
    return 110 * gaussians + cameras * gaussians * (210 + 12 * sh_coeffs) + cameras * height * width * 48


def envs_per_call(
    num_envs: int, *, cameras: int, gaussians: int, sh_coeffs: int, height: int, width: int, free_bytes: float | None
) -> int:
    """How many envs one `rasterization` call may take: B*C within CUDA's grid.y, and the call's worst case
    within MEMORY_FRACTION of `free_bytes` (None: no memory bound)."""
    by_grid = GRID_Y_LIMIT // cameras
    if by_grid < 1:
        raise ValueError(f"{cameras} cameras per env exceed gsplat's launch limit of {GRID_Y_LIMIT} images")
    fit = min(num_envs, by_grid)
    if free_bytes is not None:
        per_env = bytes_per_env(cameras, gaussians, sh_coeffs, height, width)
        fit = min(fit, int(MEMORY_FRACTION * free_bytes // per_env))
    return max(1, fit)


def free_device_bytes(device: torch.device) -> float | None:
    """Free memory on a CUDA device, counting torch's cached but unused blocks; None elsewhere."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def rasterize_gsplat(
    means: torch.Tensor,  # [B, N, 3] world
    quats: torch.Tensor,  # [B, N, 4] wxyz world
    scales: torch.Tensor,  # [N, 3] activated, shared by all envs, or [B, N, 3] per env (object size)
    opacities: torch.Tensor,  # [N] activated, shared by all envs
    sh: torch.Tensor,  # [N, K, 3] SH coefficients shared by all envs, or [B, N, K, 3] per env
    viewmats: torch.Tensor,  # [B, C, 4, 4] world-to-camera, OpenCV axes
    ks: torch.Tensor,  # [B, C, 3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int,
    near_plane: float,
    far_plane: float,
    background: torch.Tensor | None = None,  # [3]
    with_depth: bool = False,
    tile_size: int = 16,
    max_envs_per_call: int | None = None,
    extra: torch.Tensor | None = None,  # [N, E] per-Gaussian features composited like colours
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `rasterize_reference`: colours [B, C, H, W, 3 (+ E)] float32, expected depth or None.

    Envs go to gsplat in chunks of `envs_per_call` (capped further by `max_envs_per_call` if given).
    With `extra`, a degree-0 scene goes through one call: its colours are evaluated here (SH DC + 0.5, clamped
    at 0, as gsplat does) and rasterized with the features as plain channels; higher degrees need a second
    call for the features, since gsplat evaluates SH only on 3 channels.
    """
    if extra is not None:
        kw = dict(sh_degree=sh_degree, near_plane=near_plane, far_plane=far_plane, with_depth=with_depth,
                  tile_size=tile_size, max_envs_per_call=max_envs_per_call)  # fmt: skip
        if sh_degree == 0:
            from serl_gs.render.sh import SH_C0

            rgb = torch.clamp_min(SH_C0 * sh[..., 0, :] + 0.5, 0.0)  # [N, 3] or [B, N, 3]
            # The features, then a channel of ones whose composite is the pixel's alpha (for the background).
            feats = torch.cat([extra.to(rgb.dtype), torch.ones_like(extra[:, :1], dtype=rgb.dtype)], -1)
            feats = feats.expand(*rgb.shape[:-1], feats.shape[-1])
            kw["sh_degree"] = None
            out, depth = rasterize_gsplat(
                means, quats, scales, opacities, torch.cat([rgb, feats], -1), viewmats, ks, width, height, **kw
            )
            colour = out[..., :3]
            if background is not None:  # the features take no background: composite it on the colours only
                colour = colour + (1.0 - out[..., -1:]) * background.to(out)
            return torch.cat([colour, out[..., 3:-1]], -1), depth
        rgb, depth = rasterize_gsplat(
            means, quats, scales, opacities, sh, viewmats, ks, width, height, background=background, **kw
        )
        kw.update(sh_degree=None, with_depth=False)
        feats, _ = rasterize_gsplat(means, quats, scales, opacities, extra, viewmats, ks, width, height, **kw)
        return torch.cat([rgb, feats], -1), depth
    b, n = means.shape[:2]
    c = viewmats.shape[1]
    plain = sh_degree is None  # colours [.., N, D] given as they are (no SH)
    chunk = envs_per_call(
        b, cameras=c, gaussians=n, sh_coeffs=1 if plain else sh.shape[-2], height=height, width=width,
        free_bytes=free_device_bytes(means.device),
    )  # fmt: skip
    if max_envs_per_call is not None:
        chunk = max(1, min(chunk, max_envs_per_call))
    bg = None if background is None else background.to(device=means.device, dtype=torch.float32)
    per_env = sh.ndim == (3 if plain else 4)
    args = (scales, opacities, width, height, sh_degree, near_plane, far_plane, bg, with_depth, tile_size)
    if chunk >= b:
        return _rasterize_chunk(means, quats, viewmats, ks, sh, *args)
    channels = sh.shape[-1]
    rgb = torch.empty(b, c, height, width, channels, dtype=torch.float32, device=means.device)
    depth = torch.empty(b, c, height, width, dtype=torch.float32, device=means.device) if with_depth else None
    for start in range(0, b, chunk):
        part = slice(start, start + chunk)
        part_sh = sh[part] if per_env else sh
        part_scales = scales[part] if scales.ndim == 3 else scales
        rgb[part], d = _rasterize_chunk(
            means[part], quats[part], viewmats[part], ks[part], part_sh, part_scales, *args[1:]
        )
        if with_depth:
            depth[part] = d
    return rgb, depth


def _rasterize_chunk(
    means, quats, viewmats, ks, sh, scales, opacities, width, height, sh_degree, near_plane, far_plane,
    background, with_depth, tile_size,
):  # fmt: skip
    from gsplat import rasterization  # lazy: the first call may compile CUDA kernels

    b, n = means.shape[:2]
    colors, alphas, _meta = rasterization(
        means=means.contiguous(),
        quats=quats.contiguous(),
        scales=scales.expand(b, n, 3),  # gsplat makes these contiguous itself (per-env scales: read per env)
        opacities=opacities.expand(b, n),  # shared by all envs, as it must be: 1.5.3's packed projection
        # culls every env with the first env's opacities (it reads opacities[gid], not [bid * N + gid])
        # Shared SH: a stride-0 env dim, gathered per visible Gaussian only; randomized colours: one row per env.
        colors=_colors_for(sh, sh_degree, b, n),
        viewmats=viewmats.contiguous(),
        Ks=ks.contiguous(),
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=EPS2D,
        sh_degree=sh_degree,
        packed=True,  # [nnz] intermediates: thousands of envs x N Gaussians would not fit unpacked
        tile_size=tile_size,
        backgrounds=None,  # packed=True rejects any (gsplat #764); composited below instead
        render_mode="RGB+ED" if with_depth else "RGB",
        rasterize_mode="classic",
    )  # colors: [B, C, H, W, 3 or 4], alphas: [B, C, H, W, 1]
    channels = 3 if sh_degree is not None else sh.shape[-1]
    rgb = colors[..., :channels]
    if background is not None:
        rgb = rgb + (1.0 - alphas) * background  # the kernel's own T * bg, T = 1 - alpha
    return rgb.contiguous(), (colors[..., channels].contiguous() if with_depth else None)


def _colors_for(sh: torch.Tensor, sh_degree: int | None, b: int, n: int) -> torch.Tensor:
    """gsplat's `colors`: SH [.., N, K, 3] or plain features [.., N, D] (sh_degree None), one row per env."""
    if sh_degree is None:
        return sh.contiguous() if sh.ndim == 3 else sh.expand(b, n, sh.shape[-1])
    return sh.contiguous() if sh.ndim == 4 else sh.expand(b, n, sh.shape[1], 3)
