"""The preview command: a PNG grid of every env's cameras, from an MJCF or from a registered vector env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from serl_gs.render.config import RenderConfig
from serl_gs.render.preview import image_grid, render_env_preview

ROOT = Path(__file__).resolve().parents[1]
MJCF = """
<mujoco>
  <worldbody>
    <camera name="a" pos="0 -1 0.5" xyaxes="1 0 0 0 0.5 1"/>
    <camera name="b" pos="0 0 1.5"/>
    <geom type="plane" size="0.5 0.5 0.1" rgba="0.2 0.6 0.2 1"/>
    <body pos="0 0 0.1"><freejoint/><geom type="box" size="0.1 0.1 0.1" rgba="0.9 0.1 0.1 1"/></body>
  </worldbody>
  <keyframe><key name="lifted" qpos="0 0 0.4 1 0 0 0"/></keyframe>
</mujoco>
"""


def test_image_grid_lays_out_envs_by_cameras_with_gaps():
    images = np.zeros((2, 3, 4, 5, 3), np.uint8)
    images[1, 2] = 7
    grid = image_grid(images, scale=2, gap=1)
    assert grid.shape == (2 * 8 + 1, 3 * 10 + 2, 3)
    assert (grid[9:17, 22:32] == 7).all() and (grid[8] == 255).all()  # last tile; the gap row
    with pytest.raises(ValueError, match="rows, cols, H, W, 3"):
        image_grid(images[0])


@pytest.mark.slow
def test_preview_command_writes_a_png_of_every_camera(tmp_path):
    (tmp_path / "m.xml").write_text(MJCF)
    out = tmp_path / "p.png"
    cmd = [sys.executable, "-m", "serl_gs.render.preview", "--model", str(tmp_path / "m.xml"), "--keyframe",
           "lifted", "--image_size", "24", "--scale", "2", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cameras ['a', 'b']" in done.stderr and "reference" in done.stderr
    png = iio.imread(out)
    assert png.shape == (48, 2 * 48 + 2, 3)
    top_view = png[:, 50:].astype(int)
    red = (top_view[..., 0] > 150) & (top_view[..., 1] < 80)
    assert red[16:32, 16:32].mean() > 0.8  # the red box, centred under camera b
    bad = subprocess.run(cmd[:-2] + ["--keyframe", "nope", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown keyframe 'nope'" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["serl_gs/PandaPickCube-v0", "serl_gs/CartpoleBalance-v0"])
def test_every_task_gives_pixel_observations_through_the_reference_backend(env_id):
    config = RenderConfig(backend="reference", image_size=32)
    images, cameras = render_env_preview(env_id, num_envs=2, config=config, steps=2, seed=0)
    assert images.dtype == np.uint8 and images.shape[0] == 2 and images.shape[2:] == (32, 32, 3)
    assert len(cameras) >= 1 and images.std() > 5  # a scene, not a blank frame


def test_overlay_draws_captures_half_transparent_over_the_generated_scene(tmp_path):
    import json

    import mujoco
    from captures import ball_capture, write_tool_ply

    from serl_gs.render.manifest import body_name_to_id, load_scene_manifest
    from serl_gs.render.preview import model_poses, render_overlay
    from serl_gs.render.stage import RenderStage

    write_tool_ply(tmp_path / "ball.ply", ball_capture(radius=0.15, n=600, rgb=(0.1, 0.2, 0.95)), normals=True)
    part = {"ply": "ball.ply", "body": "world", "mode": "add", "transform": {"translation": [0.25, 0.25, 0.3]}}
    (tmp_path / "scene.json").write_text(json.dumps({"format": "serl_gs.scene/1", "parts": [part]}))
    model = mujoco.MjModel.from_xml_string(MJCF)
    config = RenderConfig(backend="reference", image_size=32, cameras=("b",))  # b looks straight down
    poses = model_poses(model)
    overlay = render_overlay(model, poses, config, str(tmp_path / "scene.json"))[0, 0].astype(int)
    generated = RenderStage(model, config).render(*poses)[0, 0].astype(int)
    captures = load_scene_manifest(tmp_path / "scene.json", body_name_to_id(model))
    capture = RenderStage(model, config, captures).render(*poses)[0, 0].astype(int)
    # The ball projects around pixel (row 8, col 24): there the overlay is half capture, half generated.
    centre = (slice(7, 10), slice(23, 26))
    np.testing.assert_allclose(overlay[centre], (generated[centre] + capture[centre]) / 2, atol=3)
    assert capture[centre][..., 2].min() > 200 and generated[centre][..., 2].max() < 100
    np.testing.assert_array_equal(overlay[20:, :10], generated[20:, :10])  # far from the ball: untouched
