"""The 3DGS render stage: Gaussian scenes bound to MuJoCo bodies, rendered for all envs in one batched call.

Importing this package is cheap (no torch, no gsplat); the names below load their module on first use.

    from serl_gs.render import RenderConfig, RenderStage
    stage = RenderStage(mj_model, RenderConfig(backend="auto", image_size=64, cameras=("front",)))
    images = stage.render(xpos, xquat, cam_xpos, cam_xmat)  # [B, C, H, W, 3] uint8

Modules: config (RenderConfig, SceneConfig), scene (GaussianScene), ply (.ply I/O), manifest (captures
bound to bodies, composed with the generated scene), registration (placing a capture: point pairs, planes),
sh (SH basis, turning captured colour), generate (scenes from MJCF geoms, cached), cameras (MJCF cameras,
intrinsics), geometry (posing, view matrices), reference (pure-PyTorch rasterizer), gsplat_backend (CUDA,
lazy), bridge (JAX <-> torch via DLPack), poses (body/camera poses from qpos), stage (RenderStage), frames
(gymnasium render() frames), preview (command line: a PNG grid of every env's cameras, overlays).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RenderConfig": "config",
    "SceneConfig": "config",
    "GaussianScene": "scene",
    "concat_scenes": "scene",
    "read_ply": "ply",
    "write_ply": "ply",
    "load_scene_manifest": "manifest",
    "save_scene_manifest": "manifest",
    "scene_with_captures": "manifest",
    "generate_scene": "generate",
    "scene_for_model": "generate",
    "RenderStage": "stage",
    "poses_from_qpos": "poses",
    "select_backend": "stage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
