"""Object size randomization (RandomizeConfig.object_size): one scale per env drawn from its episode key, the same
number for the physics paths (serl_gs.physics_randomize scales the object bodies' geoms, mass and inertia) and the
renderer (serl_gs.render.randomize.scale_objects scales the object's Gaussians about its body's origin); the
rendered object grows with it. The physics paths' fields are compared in tests/test_randomize_physics.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import torch

from serl_gs.physics_randomize import check_sizable
from serl_gs.randomize import GROUPS, RandomizeConfig, VisualDraw, draw_physics, draw_visual
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.poses import poses_from_qpos
from serl_gs.render.stage import RenderStage

PANDA = Path(__file__).resolve().parents[1] / "envs" / "assets" / "panda_pick_cube.xml"
SIZED = RandomizeConfig(object_size=0.15, distractors=4)  # (the distractor tests draw the same: one compile)


def _keys(n: int, seed: int = 0) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def identity_draw(b: int, c: int) -> VisualDraw:
    """A draw that changes nothing (the values a draw takes with every range 0), for placing things by hand."""
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return VisualDraw(
        colour_matrix=jnp.broadcast_to(jnp.eye(3), (b, 4, 3, 3)), colour_offset=z(b, 4, 3), cam_offset=z(b, c, 3),
        cam_rotation=jnp.broadcast_to(jnp.eye(3), (b, c, 3, 3)), focal_scale=jnp.ones((b, c)),
        principal_shift=z(b, c, 2), blur_sigma=z(b), noise_std=z(b), noise_seed=jnp.zeros(b, jnp.int32),
    )  # fmt: skip


def _physics_sizes(c: RandomizeConfig, keys: jax.Array) -> np.ndarray:
    return np.asarray(jax.jit(jax.vmap(lambda k: draw_physics(c, k)))(keys)["object_size"])


def test_sizes_differ_across_envs_repeat_from_the_same_key_and_equal_the_physics_draw():
    keys, steps, luma = _keys(16), jnp.zeros(16, jnp.int32), np.ones(4, np.float32)  # the distractor tests' shapes
    a = np.asarray(draw_visual(SIZED, keys, steps, 1, luma).object_scale)
    assert len(set(a.tolist())) == 16 and np.abs(a - 1).max() <= 0.15 and np.ptp(a) > 0.1
    b = np.asarray(draw_visual(SIZED, keys[::-1], steps + 5, 1, luma).object_scale)  # a key's own value, any step
    np.testing.assert_array_equal(b[::-1], a)
    np.testing.assert_array_equal(_physics_sizes(SIZED, keys), a)  # what the physics scales the geoms by
    # Once per episode even when the visual values are redrawn every step (the physics holds it).
    per_step = RandomizeConfig(object_size=0.15, distractors=4, brightness=0.2, per_step=True)
    later = draw_visual(per_step, keys, steps + 3, 1, luma)
    np.testing.assert_array_equal(np.asarray(later.object_scale), a)
    assert not np.array_equal(np.asarray(later.colour_matrix), np.asarray(draw_visual(per_step, keys, steps, 1,
                                                                                      luma).colour_matrix))  # fmt: skip
    # Off: no scale at all (the render stage's shared scales), 1 on the physics side; the other values unchanged.
    assert draw_visual(RandomizeConfig(brightness=0.2), keys, steps, 1, luma).object_scale is None
    assert (_physics_sizes(RandomizeConfig(friction=0.2), keys) == 1).all()
    base = RandomizeConfig(brightness=0.2)
    sized = dataclasses.replace(per_step, per_step=False)
    np.testing.assert_array_equal(np.asarray(draw_visual(sized, keys, steps, 1, luma).colour_matrix),
                                  np.asarray(draw_visual(base, keys, steps, 1, luma).colour_matrix))  # fmt: skip
    with pytest.raises(ValueError, match="object_size must be < 1"):
        RandomizeConfig(object_size=1.0)


def test_rendered_object_grows_with_its_size_and_a_scale_of_one_changes_no_bit():
    model = mujoco.MjModel.from_xml_path(str(PANDA))
    config = RenderConfig(backend="reference", image_size=64, device="cpu", cameras=("front",))
    full = RenderStage(model, config, scene_config=SceneConfig(cache_dir=None, density=300.0))
    stage = RenderStage(model, config, full.scene.subset(full.groups == GROUPS.index("object")))  # the cube alone
    qpos = np.repeat(model.key_qpos[:1], 3, 0)  # three envs at the home pose
    poses = [torch.as_tensor(p, dtype=torch.float32) for p in poses_from_qpos(model, qpos)]
    draw = dataclasses.replace(identity_draw(3, 1), object_scale=jnp.asarray([0.85, 1.0, 1.15], jnp.float32))
    out = stage.render_outputs(*poses, visual=draw, depth=True, segmentation=True)
    plain = stage.render_outputs(*poses, depth=True, segmentation=True)
    cube = (out["segmentation"].numpy() == GROUPS.index("object")).sum(axis=(1, 2, 3))
    assert cube[0] < cube[1] < cube[2] and cube[0] > 10, cube
    assert (plain["segmentation"].numpy() == GROUPS.index("object")).sum() == 3 * cube[1]
    # The cube's origin is its centre: a bigger cube's near face comes closer to the camera.
    near = [d[d > 0].min() for d in out["depth"].numpy()]
    assert near[0] > near[1] > near[2], near
    for name in ("rgb", "depth", "segmentation"):  # scale 1 gives the unscaled frame, bit for bit
        np.testing.assert_array_equal(out[name][1].numpy(), plain[name][1].numpy(), err_msg=name)


def test_gsplat_takes_per_env_scales_like_the_reference(monkeypatch):
    pytest.importorskip("gsplat")
    import gsplat_standin

    from serl_gs.render.gsplat_backend import rasterize_gsplat
    from serl_gs.render.reference import rasterize_reference

    gsplat_standin.install(monkeypatch)
    g = torch.Generator().manual_seed(0)
    b, n = 3, 24
    means = torch.randn(b, n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
    quats = torch.nn.functional.normalize(torch.randn(b, n, 4, generator=g), dim=-1)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.02
    per_env = scales * torch.tensor([0.8, 1.0, 1.2])[:, None, None]  # [B, N, 3]
    args = (torch.sigmoid(torch.randn(n, generator=g)), torch.rand(n, 1, 3, generator=g) - 0.5,
            torch.eye(4).expand(b, 1, 4, 4), torch.tensor([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]]).expand(b, 1, 3, 3),
            16, 16)  # fmt: skip
    kw = dict(sh_degree=0, near_plane=0.01, far_plane=100.0, background=torch.tensor([0.2, 0.4, 0.6]),
              with_depth=True)  # fmt: skip
    want, want_depth = rasterize_reference(means, quats, per_env, *args, **kw)
    shared, _ = rasterize_reference(means, quats, scales, *args, **kw)
    for chunk in (None, 1):  # one call, and one env per call (each chunk takes its own envs' scales)
        got, depth = rasterize_gsplat(means, quats, per_env, *args, max_envs_per_call=chunk, **kw)
        assert (got - want).abs().max().item() <= 2e-5 and (depth - want_depth).abs().max().item() <= 1e-4
    assert (want[1] - shared[1]).abs().max().item() == 0 and (want[2] - shared[2]).abs().max().item() > 0.01


def test_objects_with_meshes_are_refused():
    xml = """<mujoco><asset><mesh name="tetra" vertex="0 0 0  0.05 0 0  0 0.05 0  0 0 0.05"/></asset><worldbody>
      <body name="thing"><freejoint/><geom name="thing_mesh" type="mesh" mesh="tetra"/></body>
      <body name="ball" pos="0 0 1"><freejoint/><geom type="sphere" size="0.02"/></body></worldbody></mujoco>"""
    with pytest.raises(ValueError, match="object geom thing_mesh is mjGEOM_MESH"):
        check_sizable(mujoco.MjModel.from_xml_string(xml))
    check_sizable(mujoco.MjModel.from_xml_string(xml.replace('type="mesh" mesh="tetra"', 'type="box" size="1 1 1"')))
