"""The render stage: body and camera poses of B envs in, every env's every camera out, in one batched call.

Built once by the vector env, called after every physics step, outside `jit`:

    stage = RenderStage(mj_model, RenderConfig(backend="auto", image_size=64, cameras=("front", "wrist")))
    images = stage.render(data.xpos, data.xquat, data.cam_xpos, data.cam_xmat)  # [B, C, H, W, 3] uint8

Inputs are MuJoCo/MJX `data` fields batched over envs: JAX arrays (MJX; they enter torch through DLPack
and the images return to JAX the same way, no host copy) or numpy arrays (CPU MuJoCo; images come back
as numpy). Torch tensors in give torch tensors out.
"""

from __future__ import annotations

import logging

import mujoco
import torch

from serl_gs.render import bridge
from serl_gs.render.cameras import camera_rig
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.geometry import pose_gaussians, viewmats_from_mujoco
from serl_gs.render.gsplat_backend import gsplat_available, rasterize_gsplat
from serl_gs.render.reference import rasterize_reference
from serl_gs.render.scene import GaussianScene

log = logging.getLogger(__name__)


def select_backend(name: str) -> tuple[str, str]:
    """Resolves "auto" | "gsplat" | "reference" to a concrete backend and the reason it was chosen."""
    if name == "reference":
        return "reference", "requested"
    ok, why = gsplat_available()
    if name == "gsplat":
        if not ok:
            raise RuntimeError(f"render backend 'gsplat' requested but unavailable: {why}")
        return "gsplat", f"requested ({why})"
    if name == "auto":
        return ("gsplat", f"auto: {why}") if ok else ("reference", f"auto: gsplat unavailable, {why}")
    raise ValueError(f"unknown render backend {name!r}; choose 'auto', 'gsplat' or 'reference'")


class RenderStage:
    """Renders a Gaussian scene bound to `mj_model`'s bodies for a batch of envs.

    `scene` defaults to the one generated from the model's geoms (`scene_for_model`, cached).
    Attributes: `backend` ("gsplat" | "reference"), `backend_reason`, `camera_names`, `device`,
    `image_shape` (H, W).
    """

    def __init__(
        self,
        mj_model: mujoco.MjModel,
        config: RenderConfig = RenderConfig(),
        scene: GaussianScene | None = None,
        scene_config: SceneConfig | None = None,
    ):
        if scene is None:
            from serl_gs.render.generate import scene_for_model

            scene = scene_for_model(mj_model, scene_config or SceneConfig())
        if scene.num_gaussians and scene.body_ids.max() >= mj_model.nbody:
            raise ValueError(
                f"scene binds Gaussians to body {int(scene.body_ids.max())}, "
                f"but the model has {mj_model.nbody} bodies"
            )
        self.config = config
        self.nbody, self.ncam = mj_model.nbody, mj_model.ncam
        self.backend, self.backend_reason = select_backend(config.backend)
        log.info("render backend: %s (%s)", self.backend, self.backend_reason)
        if self.backend == "gsplat":
            self.device = torch.device("cuda")
        else:
            self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        height, width = config.height_width
        self.image_shape = (height, width)
        rig = camera_rig(mj_model, config.cameras, height, width)
        self.camera_names = rig.names
        self._camera_ids = torch.as_tensor(rig.ids, device=self.device)
        self._ks = torch.as_tensor(rig.ks, device=self.device)  # [C, 3, 3]
        self.scene = scene
        dev = self.device
        self._means = torch.as_tensor(scene.means, device=dev)  # [N, 3] body frame
        self._quats = torch.as_tensor(scene.quats, device=dev)  # [N, 4]
        self._scales = torch.exp(torch.as_tensor(scene.log_scales, device=dev))  # [N, 3]
        self._opacities = torch.sigmoid(torch.as_tensor(scene.opacity_logits, device=dev))  # [N]
        self._sh = torch.as_tensor(scene.sh, device=dev)  # [N, K, 3]
        self._body_ids = torch.as_tensor(scene.body_ids, device=dev).long()  # [N]
        self._background = torch.tensor(config.background, dtype=torch.float32, device=dev)
        self._rasterize = rasterize_gsplat if self.backend == "gsplat" else rasterize_reference

    def render(self, body_xpos, body_xquat, cam_xpos, cam_xmat):
        """uint8 images [B, C, H, W, 3], C = the configured cameras, in the input's array type.

        body_xpos [B, nbody, 3], body_xquat [B, nbody, 4] (wxyz), cam_xpos [B, ncam, 3],
        cam_xmat [B, ncam, 3, 3] (or [B, ncam, 9]): MuJoCo/MJX `data.xpos/xquat/cam_xpos/cam_xmat`.
        """
        return self._render(body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth=False)[0]

    def render_with_depth(self, body_xpos, body_xquat, cam_xpos, cam_xmat):
        """(images uint8 [B, C, H, W, 3], depth float32 [B, C, H, W]): depth is the expected camera-z
        distance in metres of what each pixel shows (0 where nothing was drawn)."""
        return self._render(body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth=True)

    def _render(self, body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth: bool):
        out_kind = bridge.array_kind(body_xpos)
        dev = self.device
        xpos = bridge.to_torch(body_xpos, dev)
        xquat = bridge.to_torch(body_xquat, dev)
        cpos = bridge.to_torch(cam_xpos, dev)
        cmat = bridge.to_torch(cam_xmat, dev)
        b = xpos.shape[0] if xpos.ndim == 3 else -1
        if cmat.ndim == 3 and cmat.shape[-1] == 9:
            cmat = cmat.reshape(cmat.shape[0], cmat.shape[1], 3, 3)
        for name, t, want in (
            ("body_xpos", xpos, (b, self.nbody, 3)),
            ("body_xquat", xquat, (b, self.nbody, 4)),
            ("cam_xpos", cpos, (b, self.ncam, 3)),
            ("cam_xmat", cmat, (b, self.ncam, 3, 3)),
        ):
            if tuple(t.shape) != want or b < 1:
                trailing = ", ".join(map(str, want[1:]))
                raise ValueError(f"{name} must have shape [B, {trailing}], got {tuple(t.shape)}")
        with torch.no_grad():
            means, quats = pose_gaussians(self._means, self._quats, self._body_ids, xpos, xquat)
            viewmats = viewmats_from_mujoco(cpos[:, self._camera_ids], cmat[:, self._camera_ids])
            height, width = self.image_shape
            rgb, depth = self._rasterize(
                means,
                quats,
                self._scales,
                self._opacities,
                self._sh,
                viewmats,
                self._ks.expand(b, -1, -1, -1),
                width,
                height,
                sh_degree=self.scene.sh_degree,
                near_plane=self.config.near_plane,
                far_plane=self.config.far_plane,
                background=self._background,
                with_depth=with_depth,
                tile_size=self.config.reference_tile_size if self.backend == "reference" else 16,
            )
            images = to_uint8(rgb)
        outputs = [images] + ([depth] if with_depth else [])
        return tuple(bridge.from_torch(t, out_kind) for t in outputs)


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """float colours (any range) -> uint8, clamped to [0, 1] and rounded to the nearest level."""
    return torch.round(rgb.clamp(0.0, 1.0) * 255.0).to(torch.uint8)

