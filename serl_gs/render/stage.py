"""The render stage: body and camera poses of B envs in, every env's every camera out, in one batched call.

Built once by the vector env, called after every physics step, outside `jit`:

    stage = RenderStage(mj_model, RenderConfig(backend="auto", image_size=64, cameras=("front", "wrist")))
    images = stage.render(data.xpos, data.xquat, data.cam_xpos, data.cam_xmat)  # [B, C, H, W, 3] uint8

Inputs are MuJoCo/MJX `data` fields batched over envs: JAX arrays (MJX; they enter torch through DLPack
and the images return to JAX the same way, no host copy) or numpy arrays (CPU MuJoCo; images come back
as numpy). Torch tensors in give torch tensors out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging

import mujoco
import torch

from serl_gs.render import bridge, randomize
from serl_gs.render.cameras import camera_rig
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.geometry import pose_gaussians, viewmats_from_mujoco
from serl_gs.render.gsplat_backend import gsplat_reachable, rasterize_gsplat
from serl_gs.render.reference import rasterize_reference
from serl_gs.render.scene import GaussianScene

log = logging.getLogger(__name__)


def default_device(config_device: str | None = None) -> torch.device:
    """The configured device, else CUDA when torch sees it, else the CPU."""
    return torch.device(config_device or ("cuda" if torch.cuda.is_available() else "cpu"))


def select_backend(name: str, device=None, probe=None) -> tuple[str, str]:
    """Resolves "auto" | "gsplat" | "reference" to a concrete backend and the reason it was chosen.

    gsplat is chosen only if a probe call succeeds: `probe(device)` raises when gsplat is unusable (the
    stage passes its own render call; the default draws one Gaussian through the same backend function).
    When gsplat was there to try but failed, "auto" falls back to the reference with a loud warning:
    the reference is orders of magnitude slower on the GPU path.
    """
    if name not in ("auto", "gsplat", "reference"):
        raise ValueError(f"unknown render backend {name!r}; choose 'auto', 'gsplat' or 'reference'")
    if name == "reference":
        return "reference", "requested"
    device = torch.device(device) if device is not None else default_device()
    ok, why = gsplat_reachable(device)
    if ok:
        try:
            (probe or probe_one_gaussian)(device)
        except Exception as err:  # a compiler error, a driver mismatch, an assert in gsplat: all "unusable"
            ok, why = False, f"gsplat unusable on {device}: {type(err).__name__}: {err}"
            if name == "auto":
                msg = f"{why}; rendering with the reference backend instead, which is far slower"
                log.warning(msg)
    if name == "gsplat":
        if not ok:
            raise RuntimeError(f"render backend 'gsplat' requested but unavailable: {why}")
        return "gsplat", f"requested ({why})"
    return ("gsplat", f"auto: {why}") if ok else ("reference", f"auto: gsplat unavailable, {why}")


def probe_one_gaussian(device: torch.device) -> None:
    """One Gaussian through `rasterize_gsplat` exactly as the stage calls it (background, with and without
    depth), checked against the reference."""
    t = functools.partial(torch.tensor, device=device)
    args = (
        t([[[0.0, 0.0, 2.0]]]), t([[[1.0, 0, 0, 0]]]), t([[0.1, 0.1, 0.1]]), t([0.9]), t([[[0.5, 0.2, -0.3]]]),
        torch.eye(4, device=device)[None, None], t([[[[8.0, 0, 8], [0, 8.0, 8], [0, 0, 1]]]]), 16, 16,
    )  # fmt: skip
    kw = dict(sh_degree=0, near_plane=0.01, far_plane=100.0, background=t([0.2, 0.4, 0.6]))
    for with_depth in (False, True):
        got = rasterize_gsplat(*args, with_depth=with_depth, **kw)
        check_probe(got, rasterize_reference(*args, with_depth=with_depth, **kw))


PROBE_MAX_MAE = 2.0  # uint8 levels, mean over the probe image: only garbage fails it (the tests ask 1e-5)
PROBE_MAX_DEPTH_ERROR = 0.01  # metres, mean over pixels both drew


def check_probe(got, want) -> None:
    """Raises if gsplat's probe images (colours, depth or None) differ from the reference's."""
    (rgb, depth), (rgb_ref, depth_ref) = got, want
    mae = (to_uint8(rgb).float() - to_uint8(rgb_ref).float()).abs().mean().item()
    if not mae <= PROBE_MAX_MAE:
        raise RuntimeError(f"gsplat's images differ from the reference: mean error {mae:.2f} levels")
    if depth_ref is not None:
        drawn = (depth_ref > 0) & (depth > 0)
        err = (depth[drawn] - depth_ref[drawn]).abs().mean().item() if bool(drawn.any()) else 0.0
        if not err <= PROBE_MAX_DEPTH_ERROR:
            raise RuntimeError(f"gsplat's depth differs from the reference: mean error {err:.4f} m")


class RenderStage:
    """Renders a Gaussian scene bound to `mj_model`'s bodies for a batch of envs.

    `scene` defaults to the one generated from the model's geoms (`scene_for_model`, cached).
    Attributes: `backend` ("gsplat" | "reference"), `backend_reason`, `camera_names`, `device` (where numpy
    inputs are rendered; JAX and torch inputs render on their own device), `image_shape` (H, W).
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
        self.scene = scene
        self.nbody, self.ncam = mj_model.nbody, mj_model.ncam
        self.device = default_device(config.device)
        height, width = config.height_width
        self.image_shape = (height, width)
        raster_h, raster_w = config.raster_height_width  # render_size: rasterized larger, then area-downsampled
        rig = camera_rig(mj_model, config.cameras, raster_h, raster_w)
        self.camera_names = rig.names
        self._rig = rig
        self._on_device: dict[torch.device, _SceneTensors] = {}
        self._mj_model = mj_model
        self._groups_by_device: dict[torch.device, torch.Tensor] = {}
        self._distractors_by_device: dict[torch.device, randomize.DistractorTemplate] = {}
        self.backend, self.backend_reason = select_backend(
            config.backend, self.device, probe=lambda dev: self._probe_gsplat(mj_model, dev)
        )
        log.debug("render backend: %s (%s)", self.backend, self.backend_reason)  # nodes say it (gpu_paths)

    def render(self, body_xpos, body_xquat, cam_xpos, cam_xmat, visual=None):
        """uint8 images [B, C, H, W, 3], C = the configured cameras, in the input's array type.

        body_xpos [B, nbody, 3], body_xquat [B, nbody, 4] (wxyz), cam_xpos [B, ncam, 3],
        cam_xmat [B, ncam, 3, 3] (or [B, ncam, 9]): MuJoCo/MJX `data.xpos/xquat/cam_xpos/cam_xmat`.
        visual: each env's randomized appearance (serl_gs.randomize.VisualDraw, one row per env) or None.
        """
        return self._render(body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth=False, visual=visual)[0]

    def render_with_depth(self, body_xpos, body_xquat, cam_xpos, cam_xmat, visual=None):
        """(images uint8 [B, C, H, W, 3], depth float32 [B, C, H, W]): depth is the expected camera-z
        distance in metres of what each pixel shows (0 where nothing was drawn)."""
        return self._render(body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth=True, visual=visual)

    def render_outputs(self, body_xpos, body_xquat, cam_xpos, cam_xmat, visual=None, depth=False, segmentation=False):
        """{"rgb": uint8 [B, C, H, W, 3], "depth": float32 [B, C, H, W] metres (0: nothing drawn), "segmentation":
        uint8 [B, C, H, W] body group (serl_gs.randomize.GROUPS; background where nothing is drawn)}, the last two
        when asked, all from one render call: labels are each Gaussian's group one-hot composited as extra channels
        (the group whose Gaussians weigh most in a pixel's colour), depth the expected camera-z distance."""
        out = self._render(body_xpos, body_xquat, cam_xpos, cam_xmat, depth, visual, segmentation)
        names = ["rgb"] + (["depth"] if depth else []) + (["segmentation"] if segmentation else [])
        return dict(zip(names, out, strict=True))

    def _render(self, body_xpos, body_xquat, cam_xpos, cam_xmat, with_depth: bool, visual=None, labels=False):
        out_kind = bridge.array_kind(body_xpos)
        xpos = bridge.to_torch(body_xpos, self.device)  # JAX/torch inputs keep their device (bridge.render_device)
        dev = xpos.device
        xquat, cpos, cmat = (bridge.to_torch(a, dev) for a in (body_xquat, cam_xpos, cam_xmat))
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
        with torch.no_grad(), _on(dev):
            visual = self._visual_on(visual, dev, b)
            rgb, depth = self._draw(self.backend, xpos, xquat, cpos, cmat, with_depth, visual, labels)
            images = to_uint8(rgb[..., :3])
            segmentation = torch.argmax(rgb[..., 3:], dim=-1).to(torch.uint8) if labels else None
        outputs = [images] + ([depth] if with_depth else []) + ([segmentation] if labels else [])
        return tuple(bridge.from_torch(t, out_kind) for t in outputs)

    def _draw(self, backend: str, xpos, xquat, cpos, cmat, with_depth: bool, visual: dict | None = None, labels=False):
        """Float colours [B, C, H, W, 3] (+ one channel per body group with `labels`) and depth (or None) from
        torch poses, all on one device."""
        s = self._scene_on(xpos.device)
        means, scales = s.means, s.scales
        if visual is not None and visual["object_scale"] is not None:  # per-env object size (randomize.py)
            means, scales = randomize.scale_objects(means, scales, self._groups_on(xpos.device), visual["object_scale"])
        means, quats = pose_gaussians(means, s.quats, s.body_ids, xpos, xquat)
        cpos, cmat, ks = cpos[:, s.camera_ids], cmat[:, s.camera_ids], s.ks.expand(xpos.shape[0], -1, -1, -1)
        sh, opacities = s.sh, s.opacities
        groups = self._groups_on(xpos.device) if visual is not None or labels else None  # body groups, computed once
        if visual is not None:  # serl_gs.render.randomize: per-env colours and cameras
            sh = randomize.recolour_sh(sh, groups, visual["colour_matrix"], visual["colour_offset"])
            cpos, cmat, ks = randomize.jitter_cameras(
                cpos, cmat, ks, visual["cam_offset"], visual["cam_rotation"], visual["focal_scale"],
                visual["principal_shift"],
            )  # fmt: skip
            if visual["distractor_xy"] is not None:  # each env's copies of the object, labelled background
                means, quats, scales, opacities, sh, added = randomize.add_distractors(
                    self._distractors_on(xpos.device), means, quats, scales, opacities, sh, visual
                )
                groups = torch.cat([groups, groups.new_full((added,), randomize.GROUPS.index("background"))])
        viewmats = viewmats_from_mujoco(cpos, cmat)
        height, width = self.config.raster_height_width  # render_size: rasterized larger, then area-downsampled
        kw = dict(
            sh_degree=self.scene.sh_degree, near_plane=self.config.near_plane, far_plane=self.config.far_plane,
            background=s.background, with_depth=with_depth,
        )  # fmt: skip
        if backend == "gsplat":
            rasterize, kw["max_envs_per_call"] = rasterize_gsplat, self.config.max_envs_per_call
        else:
            rasterize, kw["tile_size"] = rasterize_reference, self.config.reference_tile_size
        if labels:  # segmentation: each Gaussian's group one-hot rides along as extra channels
            kw["extra"] = torch.nn.functional.one_hot(groups, len(randomize.GROUPS)).to(torch.float32)
        rgb, depth = rasterize(means, quats, scales, opacities, sh, viewmats, ks, width, height, **kw)
        rgb = area_downsample(rgb, self.image_shape)  # blur and noise below act in the observation's pixels
        if depth is not None and self.config.render_size is not None:  # the mean over the block's drawn pixels
            drawn = area_downsample((depth > 0).to(depth.dtype), self.image_shape, channels=False)
            depth = area_downsample(depth, self.image_shape, channels=False) / drawn.clamp_min(1e-12)
        if visual is not None:
            colour = randomize.degrade(rgb[..., :3], visual["blur_sigma"], visual["noise_std"], visual["noise_seed"])
            rgb = torch.cat([colour, rgb[..., 3:]], -1) if labels else colour
        return rgb, depth

    def _visual_on(self, visual, device: torch.device, num_envs: int) -> dict | None:
        """A VisualDraw's fields as torch tensors on `device` (DLPack from JAX), checked against the batch."""
        if visual is None:
            return None
        out = {}
        for name in ("colour_matrix", "colour_offset", "cam_offset", "cam_rotation", "focal_scale",
                     "principal_shift", "blur_sigma", "noise_std", "noise_seed", "object_scale", "distractor_xy",
                     "distractor_yaw", "distractor_colour", "distractor_visible"):  # fmt: skip
            value = getattr(visual, name)
            if value is None and (name == "object_scale" or name.startswith("distractor")):  # not randomized
                out[name] = None
                continue
            dtype = torch.int64 if name in ("noise_seed", "distractor_colour") else torch.float32
            out[name] = (
                bridge.to_torch(value, device, dtype) if not isinstance(value, torch.Tensor) else value.to(device)
            )
            if out[name].shape[:1] != (num_envs,):
                raise ValueError(f"visual.{name} has {tuple(out[name].shape)[:1]} rows, the batch {num_envs} envs")
        if out["cam_offset"].shape[1] != len(self.camera_names):
            raise ValueError(
                f"visual draws {out['cam_offset'].shape[1]} cameras, the stage renders {len(self.camera_names)}"
            )
        return out

    @functools.cached_property
    def groups(self):
        """Body group of every Gaussian [N] (serl_gs.randomize.GROUPS): colour randomization and segmentation."""
        return randomize.body_groups(self._mj_model, self.scene)

    @functools.cached_property
    def group_luma(self):
        return randomize.group_luma(self.scene, self.groups)

    def _distractors_on(self, device: torch.device) -> randomize.DistractorTemplate:
        """The object's Gaussians that distractors copy (serl_gs.render.randomize), built once per device."""
        if device not in self._distractors_by_device:
            s = self._scene_on(device)
            self._distractors_by_device[device] = randomize.distractor_template(
                self._mj_model, self.groups, s.body_ids, s.means, s.quats, s.scales, s.opacities, s.sh
            )
        return self._distractors_by_device[device]

    def _groups_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._groups_by_device:
            self._groups_by_device[device] = torch.as_tensor(self.groups, device=device)
        return self._groups_by_device[device]

    def _scene_on(self, device: torch.device) -> _SceneTensors:
        """The scene's activated tensors on `device`, built once per device (several GPUs: one copy each)."""
        if device not in self._on_device:
            scene, dev = self.scene, device
            self._on_device[device] = _SceneTensors(
                means=torch.as_tensor(scene.means, device=dev),  # [N, 3] body frame
                quats=torch.as_tensor(scene.quats, device=dev),  # [N, 4]
                scales=torch.exp(torch.as_tensor(scene.log_scales, device=dev)),  # [N, 3]
                opacities=torch.sigmoid(torch.as_tensor(scene.opacity_logits, device=dev)),  # [N]
                sh=torch.as_tensor(scene.sh, device=dev),  # [N, K, 3]
                body_ids=torch.as_tensor(scene.body_ids, device=dev).long(),  # [N]
                camera_ids=torch.as_tensor(self._rig.ids, device=dev),  # [C]
                ks=torch.as_tensor(self._rig.ks, device=dev),  # [C, 3, 3]
                background=torch.tensor(self.config.background, dtype=torch.float32, device=dev),
            )
        return self._on_device[device]

    def _probe_gsplat(self, mj_model: mujoco.MjModel, device: torch.device) -> None:
        """The stage's own gsplat call on one env at the model's rest pose, with and without depth, checked
        against the reference: what "auto" trusts before choosing gsplat."""
        from serl_gs.render.poses import poses_from_qpos

        qpos = mj_model.key_qpos[:1] if mj_model.nkey else mj_model.qpos0[None]
        poses = [torch.as_tensor(p, dtype=torch.float32, device=device) for p in poses_from_qpos(mj_model, qpos)]
        with torch.no_grad(), _on(device):
            for with_depth in (False, True):
                got = self._draw("gsplat", *poses, with_depth)
                check_probe(got, self._draw("reference", *poses, with_depth))


@dataclasses.dataclass(frozen=True)
class _SceneTensors:
    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    body_ids: torch.Tensor
    camera_ids: torch.Tensor
    ks: torch.Tensor
    background: torch.Tensor


def _on(device: torch.device):
    """Makes `device` torch's current CUDA device (gsplat's allocations and DLPack export follow it)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def area_downsample(x: torch.Tensor | None, size: tuple[int, int], channels: bool = True) -> torch.Tensor | None:
    """[..., H, W, 3] (or [..., H, W] with channels=False) -> [..., h, w(, 3)]: the mean of each (H/h) x (W/w) block,
    in float before rounding to uint8 (an area filter: no aliasing of the fine detail a small image loses).
    Identity at the same size."""
    if x is None:
        return None
    (h, w), lead = size, x.shape[: x.ndim - (3 if channels else 2)]
    big_h, big_w = x.shape[len(lead)], x.shape[len(lead) + 1]
    if (big_h, big_w) == (h, w):
        return x
    tail = x.shape[len(lead) + 2 :]
    blocks = x.reshape(*lead, h, big_h // h, w, big_w // w, *tail)
    return blocks.mean(dim=(len(lead) + 1, len(lead) + 3))


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """float colours (any range) -> uint8, clamped to [0, 1] and rounded to the nearest level."""
    return torch.round(rgb.clamp(0.0, 1.0) * 255.0).to(torch.uint8)

