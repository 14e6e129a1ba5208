"""Depth and segmentation from the same render call as RGB: metric depth in millimetres and per-pixel body groups
(serl_gs.randomize.GROUPS) as env observations, checked against the reference renderer and against what each
group contributes to the image."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from serl_gs.randomize import GROUPS
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.poses import poses_from_qpos
from serl_gs.render.stage import RenderStage

CARTPOLE = Path(__file__).resolve().parents[1] / "envs" / "assets" / "cartpole.xml"


def _stage(scene=None, **kw):
    model = mujoco.MjModel.from_xml_path(str(CARTPOLE))
    small = SceneConfig(cache_dir=None, density=300.0)
    return model, RenderStage(model, RenderConfig(backend="reference", image_size=24, device="cpu", **kw), scene,
                              scene_config=small)  # fmt: skip


def _poses(model, n=2):
    qpos = np.repeat(model.qpos0[None], n, 0)
    qpos[1, 0], qpos[1, 1] = 0.4, 0.3  # the second env's cart moved, pole tilted
    return [torch.as_tensor(p, dtype=torch.float32) for p in poses_from_qpos(model, qpos)]


def test_segmentation_labels_the_pixels_each_group_draws():
    model, stage = _stage()
    poses = _poses(model)
    out = stage.render_outputs(*poses, depth=True, segmentation=True)
    seg = out["segmentation"].numpy()
    robot = seg == GROUPS.index("robot")
    assert set(np.unique(seg)) <= {GROUPS.index("background"), GROUPS.index("robot")} and robot.mean() > 0.02
    # Without the robot's Gaussians the image changes where the robot was labelled, and (almost) only there.
    scene = stage.scene.subset(stage.groups != GROUPS.index("robot"))
    _, no_robot = _stage(scene)
    changed = (np.abs(out["rgb"].numpy().astype(int) - no_robot.render(*poses).numpy().astype(int)).max(-1) > 8)
    # (Edge pixels the robot covers partly change too, but more of their colour comes from the background.)
    assert changed[robot].mean() > 0.95 and robot[changed].mean() > 0.8
    np.testing.assert_array_equal(out["rgb"].numpy(), stage.render(*poses).numpy())  # the same RGB as without
    np.testing.assert_array_equal(out["depth"].numpy(), stage.render_with_depth(*poses)[1].numpy())


@pytest.mark.slow  # gsplat's Python over the stand-in: ~10 s of CPU
def test_gsplat_depth_and_labels_match_the_reference(monkeypatch):
    pytest.importorskip("gsplat")
    import gsplat_standin

    gsplat_standin.install(monkeypatch)
    model, stage = _stage(background=(0.2, 0.3, 0.4))
    poses = _poses(model)
    with torch.no_grad():
        got, got_depth = stage._draw("gsplat", *poses, True, None, True)
        want, want_depth = stage._draw("reference", *poses, True, None, True)
    assert got.shape == want.shape == (2, 1, 24, 24, 3 + len(GROUPS))
    assert (got - want).abs().max().item() <= 2e-5
    drawn = want_depth > 0
    assert drawn.float().mean() > 0.5 and (got_depth[drawn] - want_depth[drawn]).abs().max().item() <= 1e-4


@pytest.mark.slow  # a pixel cartpole env on MuJoCo C: compiles its step
def test_env_observes_depth_in_millimetres_and_segmentation():
    env = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=2, physics="mujoco", obs_mode="pixels",
                       render_backend="reference", image_size=16, array_backend="numpy", depth=True,
                       segmentation=True)  # fmt: skip
    obs, _ = env.reset(seed=0)
    assert obs["depth/fixed"].dtype == np.uint16 and obs["depth/fixed"].shape == (2, 16, 16, 1)
    assert obs["segmentation/fixed"].dtype == np.uint8 and obs["segmentation/fixed"].shape == (2, 16, 16, 1)
    assert env.observation_space.contains(obs)
    _, depth = env.renderer.render_with_depth(*env.body_poses())
    np.testing.assert_array_equal(obs["depth/fixed"][..., 0], np.clip(np.round(depth[:, 0] * 1000), 0, 65535))
    assert 3000 < np.median(obs["depth/fixed"]) < 6000  # the camera sits 4 m from the cart
    obs, *_, infos = env.step(np.zeros((2, 1), np.float32))
    assert "depth/fixed" in infos["final_obs"] and "segmentation/fixed" in obs
    env.close()
    with pytest.raises(ValueError, match="need obs_mode='pixels'"):
        gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, physics="mujoco", depth=True)
