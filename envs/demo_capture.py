"""A capture placed in PandaPickCube, end to end: capture files -> registration -> manifest -> the env's frames.

    python -m envs.demo_capture --out captures/demo
    python -m serl_gs.render.preview --env serl_gs/PandaPickCube-v0 --num_envs 2 --scene captures/demo/scene.json
    python -m serl_gs.render.preview --model envs/assets/panda_pick_cube.xml --keyframe home \\
        --scene captures/demo/scene.json --overlay --out overlay.png

No real capture ships with the project, so this writes a stand-in the way a 3DGS trainer would hand one over:
a lab's table (a checkerboard mat on it, a mug, the wall behind), the floor, and an object segmented out
(a striped ball), in the reconstruction's own frame (COLMAP-like: 1 unit = 12 cm, tilted, an arbitrary
origin), as `.ply` files with SH degree 3. Then it does what a user does with their own capture: registers
the table-top from its plane (found automatically) and two mat corners, gives the other parts the same
registration (the ball centred on the cube), and writes `scene.json`: the captured room replaces the
generated one, the ball replaces the cube's Gaussians (the physics is still the cube's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import mujoco
import numpy as np

from serl_gs.render import registration
from serl_gs.render.config import SceneConfig
from serl_gs.render.generate import generate_scene
from serl_gs.render.manifest import write_manifest
from serl_gs.render.ply import write_ply
from serl_gs.render.scene import GaussianScene, concat_scenes, quat_to_matrix, rgb_to_sh_dc

# What the stand-in capture saw, where it should end up in the sim (metres, the Panda's world frame; the table
# top is z = 0): a lab's table with a checkerboard mat painted on it, a mug, the back wall, the floor, a ball.
MAT_CENTRE, MAT_HALF = (0.4, 0.0), (0.25, 0.3)
PROPS = """
<mujoco><worldbody>
  <body name="table" pos="0.35 0 0"><geom type="plane" size="0.6 0.7 1"/></body>
  <body name="edge" pos="0.35 0 -0.021"><geom type="box" size="0.6 0.7 0.02"/></body>
  <body name="wall" pos="-0.45 0 0.2"><geom type="box" size="0.02 1.2 0.6"/></body>
  <body name="floor" pos="0.35 0 -0.75"><geom type="plane" size="2 2 1"/></body>
  <body name="mug" pos="0.62 0.22 0.05"><geom type="cylinder" size="0.04 0.05"/></body>
  <body name="ball" pos="0.4 0 0.025"><geom type="sphere" size="0.025"/></body>
</worldbody></mujoco>
"""
FILES = {"tabletop.ply": ("table", "edge", "wall", "mug"), "room.ply": ("floor",), "ball.ply": ("ball",)}
# sim -> capture frame: what the reconstruction's frame happens to be.
TO_CAPTURE = registration.Similarity(
    1 / 0.12, quat_to_matrix(np.array([math.cos(-0.9), math.sin(-0.9), 0.0, 0.0])) @ quat_to_matrix(
        np.array([math.cos(0.3), 0.0, 0.0, math.sin(0.3)])
    ), np.array([0.7, -1.3, 4.2])
)  # fmt: skip
CAPTURE_UP = TO_CAPTURE.rotation @ [0.0, 0.0, 1.0]  # what a user reads off their viewer, roughly


def colours(name: str, p: np.ndarray) -> np.ndarray:
    """Base colour [N, 3] of the named prop's Gaussians at world points p [N, 3]: what the lab looks like."""
    x, y, z = p.T
    if name == "table":
        grain = 0.06 * np.sin(90 * x + 3 * np.sin(7 * y))  # wood grain along the table
        rgb = np.array([0.62, 0.45, 0.28]) * (1 + grain)[:, None]
        on_mat = (np.abs(x - MAT_CENTRE[0]) < MAT_HALF[0]) & (np.abs(y - MAT_CENTRE[1]) < MAT_HALF[1])
        check = (np.floor(x / 0.05) + np.floor(y / 0.05)) % 2 > 0
        mat = np.where(check[:, None], [0.15, 0.3, 0.75], [0.93, 0.9, 0.8])
        return np.where(on_mat[:, None], mat, rgb)
    if name == "edge":
        return np.tile([0.42, 0.3, 0.18], (len(p), 1))
    if name == "wall":  # pale green-grey, a darker rail at 0.25 m
        return np.where((np.abs(z - 0.25) < 0.03)[:, None], [0.45, 0.5, 0.5], [0.78, 0.84, 0.8])
    if name == "floor":  # 30 cm tiles
        tile = (np.floor(x / 0.3) + np.floor(y / 0.3)) % 2 > 0
        return np.where(tile[:, None], [0.3, 0.3, 0.32], [0.38, 0.38, 0.4])
    if name == "mug":
        return np.where((z > 0.09)[:, None], [0.95, 0.95, 0.95], [0.95, 0.72, 0.1])
    angle = np.arctan2(y, x - 0.4)  # the ball: six segments around its vertical axis
    segment = np.floor((angle + math.pi) / (math.pi / 3)).astype(int) % 6
    return np.array([[0.9, 0.1, 0.1], [1, 1, 1], [0.1, 0.3, 0.9], [1, 1, 1], [1, 0.8, 0.1], [1, 1, 1]])[segment]


def props(density: float = 20_000.0) -> dict[str, GaussianScene]:
    """The stand-in capture's files' contents in the sim frame, with light baked in and a view-dependent sheen."""
    model = mujoco.MjModel.from_xml_string(PROPS)
    config = SceneConfig(density=density, max_per_geom=12_000, texture=0.05, shading=0.5, cache_dir=None)
    scene = generate_scene(model, config)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    out = {}
    for file, names in FILES.items():
        pieces = []
        for name in names:
            body = model.body(name).id
            part = scene.subset(scene.body_ids == body)
            part = part.transformed(rotation_wxyz=data.xquat[body], translation=data.xpos[body]).bound_to(0)
            shade = (part.sh[:, 0] * 0.28209479 + 0.5).mean(1, keepdims=True) / 0.5  # the generator's lighting
            sh = np.zeros((part.num_gaussians, 16, 3), np.float32)
            sh[:, 0] = rgb_to_sh_dc(np.clip(colours(name, part.means) * np.clip(shade, 0.6, 1.3), 0, 1))
            sh[:, 2] = -0.1  # band 1, z term: a little brighter seen from above (view direction z < 0)
            sh[:, 6] = 0.05  # band 2, z^2 term
            pieces.append(dataclasses.replace(part, sh=sh))
        out[file] = concat_scenes(pieces)
    return out


def in_capture_frame(scene: GaussianScene) -> GaussianScene:
    t = TO_CAPTURE.transform()
    return scene.transformed(rotation_wxyz=t.rotation_wxyz, translation=t.translation, scale=t.scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="captures/demo", help="folder for the .ply files and scene.json")
    parser.add_argument("--density", type=float, default=20_000.0, help="Gaussians per square metre of surface")
    parser.add_argument("--png", help="also write the figure: placed capture (top row), overlay check (bottom)")
    parser.add_argument("--image_size", type=int, default=160, help="--png: square side of each camera's image")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for file, scene in props(args.density).items():
        write_ply(out / file, in_capture_frame(scene))
    manifest = out / "scene.json"
    write_manifest(manifest, [
        {"ply": "tabletop.ply", "body": "world"},  # "replace": the capture stands in for the generated room
        {"ply": "room.ply", "body": "world"},
        {"ply": "ball.ply", "body": "cube"},  # the physics is still the cube's
    ])  # fmt: skip
    # Two mat corners, as a user would pick them in a viewer (capture frame) and on the table (sim frame).
    corners = np.array([[MAT_CENTRE[0] + MAT_HALF[0], MAT_CENTRE[1] - MAT_HALF[1], 0.0],
                        [MAT_CENTRE[0] - MAT_HALF[0], MAT_CENTRE[1] - MAT_HALF[1], 0.0]])  # fmt: skip
    pairs = {"capture": TO_CAPTURE.apply(corners).round(4).tolist(), "sim": corners.tolist()}
    (out / "pairs.json").write_text(json.dumps(pairs, indent=1) + "\n")
    up = ",".join(f"{v:.2f}" for v in CAPTURE_UP)
    registration.main([str(manifest), "--ply", "tabletop.ply", "--plane", "auto", "--up", up, "--threshold", "0.01",
                       "--pairs", str(out / "pairs.json")])  # fmt: skip
    registration.main([str(manifest), "--ply", "room.ply", "--like", "tabletop.ply"])
    registration.main([str(manifest), "--ply", "ball.ply", "--like", "tabletop.ply", "--centre"])
    print(f"wrote {manifest}", file=sys.stderr)
    if args.png:
        write_figure(manifest, args.png, args.image_size)
    return 0


def write_figure(manifest: Path, png: str, image_size: int) -> None:
    """The README's figure: the Panda at home with the captures (front, wrist), then the overlay check."""
    from PIL import Image

    from envs.panda_pick_cube import ASSET
    from serl_gs.render.config import RenderConfig
    from serl_gs.render.manifest import scene_with_captures
    from serl_gs.render.preview import image_grid, model_poses, render_model_preview, render_overlay

    model = mujoco.MjModel.from_xml_path(str(ASSET))
    config = RenderConfig(backend="auto", image_size=image_size)
    placed, _, _ = render_model_preview(model, config, scene_with_captures(model, manifest), keyframe="home")
    overlay = render_overlay(model, model_poses(model, "home"), config, str(manifest))[0]
    grid = Image.fromarray(image_grid(np.stack([np.asarray(placed), overlay])))
    # 256 colours without dithering: a quarter of the bytes, no difference to see.
    grid.quantize(256, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(png, optimize=True)
    print(f"wrote {png}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
