"""Typed configuration for the render stage and for scenes generated from an MJCF."""

from __future__ import annotations

import dataclasses
from typing import Literal

BackendName = Literal["auto", "gsplat", "reference"]

# gsplat's defaults, which the reference backend mirrors: EWA low-pass added to the 2D covariance,
# Gaussians fainter than 1/255 skipped, a pixel is done once its transmittance would drop to 1e-4.
EPS2D = 0.3
ALPHA_THRESHOLD = 1.0 / 255.0
TRANSMITTANCE_THRESHOLD = 1e-4
MAX_ALPHA = 0.999


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """How the render stage draws every env's cameras.

    backend: "gsplat" (CUDA), "reference" (pure PyTorch, any device) or "auto" (gsplat when CUDA and gsplat
      work, else reference).
    image_size: square side in pixels, or (height, width).
    cameras: MJCF camera names to render, in order; empty means every camera of the model.
    device: torch device for numpy inputs (JAX and torch inputs render where they live); None picks CUDA
      when torch sees it, else CPU.
    max_envs_per_call: cap on the envs of one gsplat call; None sizes calls by CUDA's launch limit and free
      device memory (`gsplat_backend.envs_per_call`).
    render_size: rasterize at this square side, then area-downsample (block mean) to `image_size` (Squint's small
      images: render 64, observe 16); a multiple of image_size's sides. None: rasterize at image_size.
    """

    backend: BackendName = "auto"
    image_size: int | tuple[int, int] = 64
    cameras: tuple[str, ...] = ()
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    near_plane: float = 0.01
    far_plane: float = 100.0
    device: str | None = None
    tile_size: int | None = None  # reference backend's tile side; None: 4 px up to 128 px images, else 8
    max_envs_per_call: int | None = None
    render_size: int | None = None

    def __post_init__(self):
        if self.backend not in ("auto", "gsplat", "reference"):
            raise ValueError(f"backend must be 'auto', 'gsplat' or 'reference', got {self.backend!r}")
        height, width = self.height_width
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size!r}")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a tuple of names, got the string {self.cameras!r}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be three values in [0, 1], got {self.background!r}")
        if not 0.0 < self.near_plane < self.far_plane:
            raise ValueError(
                f"need 0 < near_plane < far_plane, got near_plane={self.near_plane}, "
                f"far_plane={self.far_plane}"
            )
        if self.tile_size is not None and self.tile_size < 1:
            raise ValueError(f"tile_size must be positive, got {self.tile_size}")
        if self.max_envs_per_call is not None and self.max_envs_per_call < 1:
            raise ValueError(f"max_envs_per_call must be positive, got {self.max_envs_per_call}")
        if self.render_size is not None and (
            self.render_size < 1 or self.render_size % height or self.render_size % width
        ):
            raise ValueError(
                f"render_size must be a positive multiple of image_size {self.image_size!r}, got {self.render_size!r}"
            )

    @property
    def reference_tile_size(self) -> int:
        # Measured on a CPU: small tiles waste fewer pixel evaluations on small splats; gsplat always uses 16.
        if self.tile_size is not None:
            return self.tile_size
        return 4 if max(self.raster_height_width) <= 128 else 8

    @property
    def raster_height_width(self) -> tuple[int, int]:
        """The size rasterized at: render_size when set (then downsampled to height_width), else height_width."""
        return (self.render_size, self.render_size) if self.render_size is not None else self.height_width

    @property
    def height_width(self) -> tuple[int, int]:
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        if len(self.image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {self.image_size!r}")
        return int(self.image_size[0]), int(self.image_size[1])


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """How a Gaussian scene is generated from an MJCF's geoms.

    density: Gaussians per square metre of geom surface (before the per-geom caps).
    min_per_geom / max_per_geom: keep tiny geoms visible and huge ones (floors) affordable.
    plane_extent: half-size in metres given to infinite planes (MJCF size 0).
    texture: strength of the deterministic colour variation (0 = flat geom colour).
    shading: strength of the lighting baked into colours at the model's qpos0 (0 = unlit), like a capture.
    cache_dir: where generated scenes are kept as .ply (None: in memory only).
    """

    density: float = 1_500.0
    min_per_geom: int = 64
    max_per_geom: int = 2_500
    plane_extent: float = 1.5
    texture: float = 0.12
    shading: float = 0.5
    opacity: float = 0.98
    seed: int = 0
    cache_dir: str | None = "~/.cache/serl_gs/scenes"

    def __post_init__(self):
        if not self.density > 0:
            raise ValueError(f"density must be positive, got {self.density}")
        if not 1 <= self.min_per_geom <= self.max_per_geom:
            raise ValueError(
                f"need 1 <= min_per_geom <= max_per_geom, got {self.min_per_geom} and {self.max_per_geom}"
            )
        if not self.plane_extent > 0:
            raise ValueError(f"plane_extent must be positive, got {self.plane_extent}")
        if not 0.0 <= self.texture <= 1.0:
            raise ValueError(f"texture must be in [0, 1], got {self.texture}")
        if not 0.0 <= self.shading <= 1.0:
            raise ValueError(f"shading must be in [0, 1], got {self.shading}")
        if not 0.0 < self.opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {self.opacity}")
