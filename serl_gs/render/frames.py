"""Frames for gymnasium's `render()`: one camera's 3DGS image, or every camera side by side, per env.

The env's observation frames are reused when they already are the frame asked for (pixel observations of
that camera at that size); otherwise a render stage of its own draws them (e.g. 128 px video frames of a
policy that sees 64 px images, or of a state-only policy).
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from serl_gs.data.records import PIXELS_PREFIX
from serl_gs.render.scene import GaussianScene

ALL_CAMERAS = "all"
GAP = 2  # white pixels between tiled cameras


@dataclasses.dataclass(frozen=True)
class FrameConfig:
    camera: str = ALL_CAMERAS  # an MJCF camera name, or "all": every camera left to right
    size: int = 128  # square side of each camera's image, pixels
    backend: str = "auto"  # render backend ("auto" | "gsplat" | "reference")

    def __post_init__(self):
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"render_camera must be a camera name or {ALL_CAMERAS!r}, got {self.camera!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"render_size must be a positive int, got {self.size!r}")


class FrameRenderer:
    """Draws `render()` frames of B envs from their poses: uint8 [B, H, W_total, 3] numpy."""

    def __init__(self, mj_model: mujoco.MjModel, config: FrameConfig, scene: GaussianScene | None = None):
        from serl_gs.render.cameras import camera_rig

        cameras = () if config.camera == ALL_CAMERAS else (config.camera,)
        self.camera_names = camera_rig(mj_model, cameras, config.size, config.size).names  # checks the name
        self.config = config
        self._model, self._scene = mj_model, scene
        self._stage = None  # built on the first frame that the observations cannot give

    def frames(self, poses, pixels: dict | None = None) -> np.ndarray:
        """Frames of the envs whose poses (xpos, xquat, cam_xpos, cam_xmat, batched) are given.

        `pixels`: the same envs' observation images {"pixels/<camera>": [B, h, w, 3]}, used when they match.
        """
        keys = [PIXELS_PREFIX + name for name in self.camera_names]
        size = self.config.size
        if pixels and all(k in pixels and tuple(pixels[k].shape[1:3]) == (size, size) for k in keys):
            images = np.stack([np.asarray(pixels[k]) for k in keys], axis=1)  # [B, C, H, W, 3]
        else:
            images = np.asarray(self._render_stage().render(*poses))
        return tile(images)

    def _render_stage(self):
        if self._stage is None:
            from serl_gs.render.config import RenderConfig
            from serl_gs.render.stage import RenderStage

            c = self.config
            render_config = RenderConfig(backend=c.backend, image_size=c.size, cameras=tuple(self.camera_names))
            self._stage = RenderStage(self._model, render_config, self._scene)
        return self._stage


def tile(images: np.ndarray) -> np.ndarray:
    """uint8 [B, C, H, W, 3] -> [B, H, C * W + (C - 1) * GAP, 3]: each env's cameras left to right."""
    b, c, h, w, _ = images.shape
    out = np.full((b, h, c * w + (c - 1) * GAP, 3), 255, np.uint8)
    for i in range(c):
        out[:, :, i * (w + GAP) : i * (w + GAP) + w] = images[:, i]
    return out
