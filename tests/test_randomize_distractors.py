"""Distractor objects (RandomizeConfig.distractors): per env, up to k copies of the object's Gaussians in PALETTE
colours, placed and turned on the table near the object from the env's key, appended to that env's Gaussians
inside the one render call (serl_gs.render.randomize.add_distractors); labelled background in segmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import torch

from serl_gs.randomize import DISTRACTOR_SPREAD, GROUPS, PALETTE, RandomizeConfig, draw_visual
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.poses import poses_from_qpos
from serl_gs.render.stage import RenderStage
from tests.test_randomize_object_size import identity_draw

ASSETS = Path(__file__).resolve().parents[1] / "envs" / "assets"
FOUR = RandomizeConfig(object_size=0.15, distractors=4)  # (the object size tests draw the same: one compile)


def _keys(n: int, seed: int = 0) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def test_distractors_differ_across_envs_repeat_from_the_same_key_and_hold_for_the_episode():
    keys, steps, luma = _keys(16), jnp.zeros(16, jnp.int32), np.ones(4, np.float32)
    a = draw_visual(FOUR, keys, steps, 1, luma)
    xy = np.asarray(a.distractor_xy)
    assert xy.shape == (16, 4, 2) and np.abs(xy).max() <= DISTRACTOR_SPREAD and len({r.tobytes() for r in xy}) == 16
    counts = np.asarray(a.distractor_visible).sum(1)
    assert set(counts.tolist()) == {0, 1, 2, 3, 4}  # how many stand: 0..k
    assert np.asarray(a.distractor_colour).max() < len(PALETTE)
    per_step = dataclasses.replace(FOUR, brightness=0.2, per_step=True)  # the object size tests' too
    b = draw_visual(per_step, keys[::-1], steps + 7, 1, luma)  # another step, the keys reversed
    for name in ("distractor_xy", "distractor_yaw", "distractor_colour", "distractor_visible"):
        np.testing.assert_array_equal(np.asarray(getattr(b, name))[::-1], np.asarray(getattr(a, name)), err_msg=name)
    assert draw_visual(RandomizeConfig(brightness=0.2), keys, steps, 1, luma).distractor_xy is None
    for bad in (9, 1.5, -1):
        with pytest.raises(ValueError, match=f"distractors must be an int in \\[0, 8\\], got {bad}"):
            RandomizeConfig(distractors=bad)


def _cube_stage(size: int = 32) -> tuple[mujoco.MjModel, RenderStage]:
    """PandaPickCube's cube alone (a small scene: fast), seen by the front camera."""
    model = mujoco.MjModel.from_xml_path(str(ASSETS / "panda_pick_cube.xml"))
    config = RenderConfig(backend="reference", image_size=size, device="cpu", cameras=("front",))
    full = RenderStage(model, config, scene_config=SceneConfig(cache_dir=None, density=300.0))
    return model, RenderStage(model, config, full.scene.subset(full.groups == GROUPS.index("object")))


def _placed(draw, xy, colour, visible):
    return dataclasses.replace(
        draw, distractor_xy=jnp.asarray(xy, jnp.float32), distractor_yaw=jnp.zeros(np.shape(visible), jnp.float32),
        distractor_colour=jnp.asarray(colour, jnp.int32), distractor_visible=jnp.asarray(visible, jnp.float32),
    )  # fmt: skip


def test_copies_render_in_their_colours_labelled_background_and_hidden_ones_change_no_bit(monkeypatch):
    model, stage = _cube_stage()
    qpos = np.repeat(model.key_qpos[:1], 2, 0)
    poses = [torch.as_tensor(p, dtype=torch.float32) for p in poses_from_qpos(model, qpos)]
    # Env 0: two copies either side of the cube in the image (dark blue, dark green); env 1: none there this episode.
    draw = _placed(identity_draw(2, 1), [[[0.2, 0.2], [-0.2, -0.2]]] * 2, [[5, 4], [5, 4]], [[1, 1], [0, 0]])
    out = stage.render_outputs(*poses, visual=draw, depth=True, segmentation=True)
    plain = stage.render_outputs(*poses, depth=True, segmentation=True)
    for name in ("rgb", "depth", "segmentation"):  # copies not there are culled: env 1 is today's frame
        np.testing.assert_array_equal(out[name][1].numpy(), plain[name][1].numpy(), err_msg=name)
    seg, plain_seg = out["segmentation"][0, 0].numpy(), plain["segmentation"][0, 0].numpy()  # [H, W]
    assert ((seg == GROUPS.index("object")) == (plain_seg == GROUPS.index("object"))).all()  # the cube alone
    changed = np.abs(out["rgb"][0].numpy().astype(int) - plain["rgb"][0].numpy().astype(int)).max(-1)[0] > 30
    assert changed.sum() >= 10 and (seg[changed] == GROUPS.index("background")).all()
    assert (out["depth"][0].numpy()[0][changed] > 0).all()  # drawn, at a depth
    # Each copy takes its colour (the template is one colour, so its relative luma is ~1).
    rgb = out["rgb"][0].numpy()[0].astype(float) / 255
    colours = {tuple(np.round(rgb[p], 2)) for p in zip(*np.nonzero(changed), strict=True)}
    near = lambda c, p: np.abs(np.subtract(c, p)).max() < 0.2  # noqa: E731  (edges blend with the background)
    assert any(near(c, PALETTE[5]) for c in colours) and any(near(c, PALETTE[4]) for c in colours)
    # gsplat (over the CPU stand-in) draws the same copies.
    pytest.importorskip("gsplat")
    import gsplat_standin

    gsplat_standin.install(monkeypatch)
    visual = stage._visual_on(draw, torch.device("cpu"), 2)
    with torch.no_grad():
        got, _ = stage._draw("gsplat", *poses, False, visual)
        want, _ = stage._draw("reference", *poses, False, visual)
    assert (got - want).abs().max().item() <= 2e-5


def test_a_scene_without_an_object_refuses_distractors():
    model = mujoco.MjModel.from_xml_path(str(ASSETS / "cartpole.xml"))
    stage = RenderStage(model, RenderConfig(backend="reference", image_size=8, device="cpu"),
                        scene_config=SceneConfig(cache_dir=None, density=100.0))  # fmt: skip
    poses = poses_from_qpos(model, model.qpos0[None])
    draw = _placed(identity_draw(1, len(stage.camera_names)), [[[0.1, 0.0]]], [[0]], [[1]])
    with pytest.raises(ValueError, match="distractors are copies of the scene's object"):
        stage.render(*poses, visual=draw)
