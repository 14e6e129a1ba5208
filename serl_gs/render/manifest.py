"""Scene manifests: users' 3DGS captures bound to a task's bodies, added to or replacing its generated scene.

A manifest is JSON; paths of parts are relative to the manifest's folder:

    {"format": "serl_gs.scene/1",
     "parts": [
       {"ply": "lab.ply", "body": "world",                     # a captured background, bound to the world
        "transform": {"rotation_wxyz": [1, 0, 0, 0], "translation": [0, 0, -0.1], "scale": 0.5},
        "crop": {"keep": [[-1, -1, -0.8], [1.5, 1, 1.2]],     # boxes in the body frame, after the transform
                 "remove": [[[-0.2, -0.2, 0.0], [0.2, 0.2, 1.0]]]}},   # e.g. the real robot, cut out
       {"ply": "cube.ply", "body": "cube"},                    # a captured object, bound to the cube
       {"ply": "hand.ply", "body": "hand", "mode": "add"}]}    # per-link robot captures: bound to links

`transform` maps the capture's frame into the body's frame, x -> scale * R x + t (fit it with
`serl_gs.render.registration`); higher SH bands and normals turn with it. `mode` is "replace" (default: the
body's generated Gaussians are dropped, the capture stands in for them) or "add" (both are drawn). Bodies
that no part names keep their generated Gaussians. `body` is a MuJoCo body name or id.

    scene = scene_with_captures(mj_model, "scene.json")   # what the env renders with `scene="scene.json"`
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import mujoco
import numpy as np

from serl_gs.render.config import SceneConfig
from serl_gs.render.ply import read_ply, write_ply
from serl_gs.render.scene import GaussianScene, concat_scenes

log = logging.getLogger(__name__)
MANIFEST_FORMAT = "serl_gs.scene/1"
MODES = ("replace", "add")
_TRANSFORM_KEYS = {"rotation_wxyz", "translation", "scale"}
_PART_KEYS = {"ply", "body", "transform", "mode", "crop", "sha256"}


@dataclasses.dataclass(frozen=True)
class Transform:
    """x -> scale * R(rotation_wxyz) x + translation: a capture's frame into its body's frame."""

    rotation_wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rotation_wxyz": [float(v) for v in self.rotation_wxyz],
            "translation": [float(v) for v in self.translation],
            "scale": float(self.scale),
        }


Box = tuple[tuple[float, float, float], tuple[float, float, float]]  # (min corner, max corner)


@dataclasses.dataclass(frozen=True)
class Part:
    ply: Path  # absolute (resolved against the manifest's folder)
    body: str | int
    transform: Transform | None = None
    mode: Literal["replace", "add"] = "replace"
    keep: Box | None = None  # keep only Gaussians inside this box (body frame, after the transform)
    remove: tuple[Box, ...] = ()  # drop Gaussians inside any of these boxes
    sha256: str | None = None  # when given (a recorded scene), the .ply must still have this hash


def read_manifest(path: str | os.PathLike) -> list[Part]:
    """The parts of a manifest, validated; errors name the file, the part and the bad value.

    A bare 3DGS `.ply` given instead of a manifest is one capture bound to the world body (as the manifest
    `{"parts": [{"ply": <file>, "body": "world"}]}`: it stands in for the world's generated Gaussians)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"scene manifest {path} does not exist") from None
    if data[:4] in (b"ply\n", b"ply\r"):
        log.info(
            "scene %s is a bare .ply: a capture bound to the world body (write a manifest to bind it "
            "elsewhere or to place it)",
            path,
        )
        return [Part(path, "world")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is neither a scene manifest (JSON) nor a .ply: the scene option wants a JSON manifest "
            "(serl_gs.render.manifest) or one 3DGS .ply capture"
        ) from None
    return _parse(path, text)


def _raw_parts(path: Path, parts: list[Part]) -> list[dict[str, Any]]:
    """The manifest's part dicts as written (a bare .ply: its one part)."""
    if len(parts) == 1 and parts[0].ply == path:
        return [{"ply": path.name, "body": "world"}]
    return json.loads(path.read_text())["parts"]


def _parse(path: Path, text: str) -> list[Part]:
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: expected a JSON object with format {MANIFEST_FORMAT!r}")
    parts = manifest.get("parts")
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"{path}: 'parts' must be a non-empty list")
    return [_part(path, i, part) for i, part in enumerate(parts)]


def _part(path: Path, i: int, part: Any) -> Part:
    where = f"{path}: part {i}"
    if not isinstance(part, dict) or "ply" not in part or "body" not in part:
        raise ValueError(f"{where} needs 'ply' and 'body', got {part!r}")
    unknown = set(part) - _PART_KEYS
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_PART_KEYS)}")
    body = part["body"]
    if not isinstance(body, str) and not (isinstance(body, int) and body >= 0):
        raise ValueError(f"{where} body must be a name or an id >= 0, got {body!r}")
    mode = part.get("mode", "replace")
    if mode not in MODES:
        raise ValueError(f"{where} mode must be one of {MODES}, got {mode!r}")
    transform = None
    if "transform" in part:
        t = part["transform"]
        if not isinstance(t, dict) or set(t) - _TRANSFORM_KEYS:
            raise ValueError(f"{where} transform must be an object with keys {sorted(_TRANSFORM_KEYS)}, got {t!r}")
        transform = Transform(
            rotation_wxyz=_vector(t.get("rotation_wxyz", (1.0, 0.0, 0.0, 0.0)), 4, f"{where} rotation_wxyz"),
            translation=_vector(t.get("translation", (0.0, 0.0, 0.0)), 3, f"{where} translation"),
            scale=float(t.get("scale", 1.0)),
        )
    crop = part.get("crop", {})
    if not isinstance(crop, dict) or set(crop) - {"keep", "remove"}:
        raise ValueError(f"{where} crop must be an object with keys 'keep' and/or 'remove', got {crop!r}")
    keep = _box(crop["keep"], f"{where} crop.keep") if "keep" in crop else None
    remove = crop.get("remove", [])
    if not isinstance(remove, list):
        raise ValueError(f"{where} crop.remove must be a list of boxes, got {remove!r}")
    boxes = tuple(_box(b, f"{where} crop.remove[{j}]") for j, b in enumerate(remove))
    digest = part.get("sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ValueError(f"{where} sha256 must be 64 hex digits, got {digest!r}")
    return Part(path.parent / part["ply"], body, transform, mode, keep, boxes, digest)


def _vector(value: Any, n: int, what: str) -> tuple[float, ...]:
    array = np.asarray(value, dtype=object)
    if array.shape != (n,) or not all(isinstance(v, int | float) and np.isfinite(v) for v in array):
        raise ValueError(f"{what} must be {n} finite numbers, got {value!r}")
    return tuple(float(v) for v in array)


def _box(value: Any, what: str) -> Box:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{what} must be [[min x, y, z], [max x, y, z]], got {value!r}")
    low, high = _vector(value[0], 3, what), _vector(value[1], 3, what)
    if not all(a <= b for a, b in zip(low, high, strict=True)):
        raise ValueError(f"{what}: min corner {list(low)} exceeds max corner {list(high)}")
    return low, high


def body_name_to_id(mj_model: mujoco.MjModel) -> dict[str, int]:
    """Body names -> ids; the world body is "world"."""
    return {mj_model.body(i).name: i for i in range(mj_model.nbody)}


def load_part(part: Part, body_names: dict[str, int] | None = None) -> GaussianScene:
    """One part's Gaussians: read, placed by its transform, cropped, bound to its body."""
    body = part.body
    if isinstance(body, str):
        if body_names is None or body not in body_names:
            known = sorted(body_names) if body_names else "none given"
            raise ValueError(f"{part.ply.name}: names body {body!r}; known bodies: {known}")
        body = body_names[body]
    if part.sha256 is not None and _sha256(part.ply) != part.sha256:
        raise ValueError(f"{part.ply} has changed since the scene was recorded (sha256 differs)")
    scene = read_ply(part.ply, body_id=body)
    if part.transform is not None:
        t = part.transform
        scene = scene.transformed(rotation_wxyz=t.rotation_wxyz, translation=t.translation, scale=t.scale)
    inside = np.ones(scene.num_gaussians, bool) if part.keep is None else _in_box(scene.means, part.keep)
    for box in part.remove:
        inside &= ~_in_box(scene.means, box)
    if not inside.any():
        raise ValueError(f"{part.ply}: the crop leaves none of its {scene.num_gaussians} Gaussians")
    return scene if inside.all() else scene.subset(inside)


def _in_box(points: np.ndarray, box: Box) -> np.ndarray:
    low, high = np.asarray(box[0]), np.asarray(box[1])
    return np.all((points >= low) & (points <= high), axis=1)


def load_scene_manifest(path: str | os.PathLike, body_names: dict[str, int] | None = None) -> GaussianScene:
    """Every part of a manifest, placed and cropped, in one scene (bodies by name need `body_names`)."""
    path = Path(path)
    return concat_scenes([load_part(part, body_names) for part in read_manifest(path)])


def scene_with_captures(
    mj_model: mujoco.MjModel, manifest: str | os.PathLike, scene_config: SceneConfig | None = None
) -> GaussianScene:
    """The task's generated scene with the manifest's captures: "replace" parts drop their body's generated
    Gaussians, "add" parts join them. The scene an env renders with `scene=manifest`."""
    from serl_gs.render.generate import scene_for_model

    names = body_name_to_id(mj_model)
    parts = read_manifest(manifest)
    captures = [load_part(part, names) for part in parts]
    if max(int(c.body_ids.max()) for c in captures) >= mj_model.nbody:
        raise ValueError(f"{manifest}: a part binds body id >= {mj_model.nbody}, the model's body count")
    generated = scene_for_model(mj_model, scene_config or SceneConfig())
    replaced = {int(c.body_ids[0]) for c, p in zip(captures, parts, strict=True) if p.mode == "replace"}
    kept = generated.subset(~np.isin(generated.body_ids, sorted(replaced))) if replaced else generated
    return concat_scenes(([kept] if kept.num_gaussians else []) + captures)


def write_manifest(path: str | os.PathLike, parts: list[dict[str, Any]]) -> Path:
    """Writes a manifest (atomically) from part dicts as in the module docstring; returns its path."""
    path = Path(path)
    text = json.dumps({"format": MANIFEST_FORMAT, "parts": parts}, indent=1) + "\n"
    _parse(path, text)  # refuse to write what would not load
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def set_part_transform(path: str | os.PathLike, ply: str, transform: Transform) -> Path:
    """Writes `transform` into the manifest's part whose `ply` is `ply` (registration's output)."""
    path = Path(path)
    read_manifest(path)  # a valid manifest to start from
    parts = json.loads(path.read_text())["parts"]
    matches = [p for p in parts if p["ply"] == ply]
    if len(matches) != 1:
        names = [p["ply"] for p in parts]
        raise ValueError(f"{path}: expected one part with ply {ply!r}, found {len(matches)}; parts: {names}")
    matches[0]["transform"] = transform.to_json()
    return write_manifest(path, parts)


def record_scene(manifest: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Records the scene a run used: `<folder>/scene.json`, the manifest with absolute .ply paths and each
    file's sha256 (loading it later checks the files are unchanged). Returns its path."""
    parts = read_manifest(manifest)
    raw = _raw_parts(Path(manifest), parts)
    for entry, part in zip(raw, parts, strict=True):
        entry["ply"] = str(part.ply.resolve())
        entry["sha256"] = _sha256(part.ply)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_manifest(folder / "scene.json", raw)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise ValueError(f"scene part {path} does not exist") from None


def save_scene_manifest(folder: str | os.PathLike, scene: GaussianScene, body_names: list[str]) -> Path:
    """Writes one `.ply` per body (in that body's frame) and a manifest naming the bodies; returns its path.

    `body_names[i]` is body i's name (e.g. `[mj_model.body(i).name for i in range(mj_model.nbody)]`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for body in np.unique(scene.body_ids):
        if body >= len(body_names):
            raise ValueError(f"scene binds Gaussians to body {body}, but only {len(body_names)} names were given")
        name = body_names[body] or f"body{body}"
        file = f"{int(body):03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.ply"
        write_ply(folder / file, scene.subset(scene.body_ids == body))
        parts.append({"ply": file, "body": body_names[body] or int(body)})
    return write_manifest(folder / "scene.json", parts)
