"""The gsplat backend: every env's every camera in ONE `gsplat.rasterization` call (CUDA only).

gsplat compiles its CUDA code on first use, so it is imported here lazily, inside the functions, and only
after CUDA is known to be present: nothing on a CPU path imports it. Written against gsplat 1.5.3:
`rasterization(means [..., N, 3], quats [..., N, 4] wxyz, scales [..., N, 3], opacities [..., N],
colors [..., N, K, 3] SH, viewmats [..., C, 4, 4] world-to-camera, Ks [..., C, 3, 3], width, height, ...)`
with the env batch as the leading `...` dimension.
"""

from __future__ import annotations

import functools

import torch

from serl_gs.render.config import EPS2D


@functools.lru_cache(maxsize=1)
def gsplat_available() -> tuple[bool, str]:
    """(True, version) when CUDA is present and gsplat imports and renders; else (False, the reason).

    The probe draws one Gaussian, so a missing or broken CUDA toolchain shows up here (once per process,
    the first call may compile gsplat's kernels for minutes) and "auto" can fall back to the reference.
    """
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    try:
        import gsplat

        eye = torch.eye(4, device="cuda")[None, None]
        k = torch.tensor([[[[8.0, 0, 8], [0, 8.0, 8], [0, 0, 1]]]], device="cuda")
        one = torch.ones(1, 1, device="cuda")
        rasterize_gsplat(
            torch.tensor([[[0.0, 0.0, 2.0]]], device="cuda"), torch.tensor([[[1.0, 0, 0, 0]]], device="cuda"),
            0.1 * one.expand(1, 3), 0.9 * one[0], torch.zeros(1, 1, 3, device="cuda"), eye, k, 16, 16,
            sh_degree=0, near_plane=0.01, far_plane=100.0,
        )  # fmt: skip
        torch.cuda.synchronize()
    except Exception as err:  # ImportError, a compiler error, a driver mismatch: all mean "not usable here"
        return False, f"gsplat unusable: {type(err).__name__}: {err}"
    return True, f"gsplat {getattr(gsplat, '__version__', '?')}"


def rasterize_gsplat(
    means: torch.Tensor,  # [B, N, 3] world
    quats: torch.Tensor,  # [B, N, 4] wxyz world
    scales: torch.Tensor,  # [N, 3] activated, shared by all envs
    opacities: torch.Tensor,  # [N] activated, shared by all envs
    sh: torch.Tensor,  # [N, K, 3] SH coefficients, shared by all envs
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `rasterize_reference`: colours [B, C, H, W, 3] float32, expected depth or None."""
    from gsplat import rasterization  # lazy: compiles CUDA kernels on first use

    b, n = means.shape[:2]
    c = viewmats.shape[1]
    backgrounds = None
    if background is not None:
        backgrounds = background.to(device=means.device, dtype=torch.float32).expand(b, c, 3).contiguous()
    colors, _alphas, _meta = rasterization(
        means=means.contiguous(),
        quats=quats.contiguous(),
        scales=scales.expand(b, n, 3),  # gsplat makes these contiguous itself
        opacities=opacities.expand(b, n),
        colors=sh.expand(b, n, sh.shape[1], 3),  # stride-0 env dim: gathered per visible Gaussian only
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
        backgrounds=backgrounds,
        render_mode="RGB+ED" if with_depth else "RGB",
        rasterize_mode="classic",
    )  # colors: [B, C, H, W, 3 or 4]
    if with_depth:
        return colors[..., :3].contiguous(), colors[..., 3].contiguous()
    return colors, None
