"""Visual randomization (serl_gs.randomize, serl_gs.render.randomize): values drawn per env from its key, applied
inside the one batched render call; off gives today's frames bitwise; both backends draw the same per-env
colours."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from serl_gs.randomize import GROUPS, PRESETS, RandomizeConfig, draw_visual, resolve
from serl_gs.render import randomize as apply
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.poses import poses_from_qpos
from serl_gs.render.reference import sh_basis
from serl_gs.render.stage import RenderStage
from tests.test_randomize_object_size import identity_draw

PANDA = Path(__file__).resolve().parents[1] / "envs" / "assets" / "panda_pick_cube.xml"


def _keys(n: int, seed: int = 0) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def test_values_differ_across_envs_and_repeat_from_the_same_key():
    c = PRESETS["strong"]
    keys, steps = _keys(4), jnp.zeros(4, jnp.int32)
    a = draw_visual(c, keys, steps, 2, np.ones(4, np.float32))
    b = draw_visual(c, keys[::-1], steps, 2, np.ones(4, np.float32))
    for name in ("colour_matrix", "cam_offset", "focal_scale", "blur_sigma", "noise_seed"):
        x = np.asarray(getattr(a, name))
        assert len({x[i].tobytes() for i in range(4)}) == 4, f"{name}: every env its own value"
        np.testing.assert_array_equal(x, np.asarray(getattr(b, name))[::-1], err_msg=name)  # a key's own values
    assert np.abs(np.asarray(a.cam_offset)).max() <= c.camera_position
    moved = draw_visual(c, keys, steps + 1, 2, np.ones(4, np.float32))
    np.testing.assert_array_equal(np.asarray(moved.colour_matrix), np.asarray(a.colour_matrix))  # per episode
    per_step = draw_visual(RandomizeConfig(brightness=0.2, per_step=True), keys, steps + 1, 2, np.ones(4))
    first = draw_visual(RandomizeConfig(brightness=0.2, per_step=True), keys, steps, 2, np.ones(4))
    assert not np.array_equal(np.asarray(per_step.colour_matrix), np.asarray(first.colour_matrix))


def test_presets_and_bad_ranges():
    assert resolve(None) is None and resolve("none") is None and resolve(RandomizeConfig()) is None
    assert resolve("light") == PRESETS["light"] and PRESETS["light"].visual and PRESETS["light"].physics
    with pytest.raises(ValueError, match="unknown randomize preset 'medium'"):
        resolve("medium")
    with pytest.raises(ValueError, match="brightness must be < 1"):
        RandomizeConfig(brightness=1.5)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0, got -0.1"):
        RandomizeConfig(noise=-0.1)


def test_colour_maps_act_exactly_on_every_sh_band():
    g = torch.Generator().manual_seed(0)
    sh = torch.randn(50, 16, 3, generator=g) * 0.3
    groups = torch.randint(0, 4, (50,), generator=g)
    m = torch.eye(3) + 0.2 * torch.randn(2, 4, 3, 3, generator=g)
    o = 0.1 * torch.randn(2, 4, 3, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=-1)
    basis = sh_basis(3, dirs)[..., None]  # [N, 16, 1]
    rgb = (basis * sh).sum(1) + 0.5  # [N, 3], before the renderer's clamp
    new = (basis * apply.recolour_sh(sh, groups, m, o)).sum(2) + 0.5  # [B, N, 3]
    want = torch.einsum("bnij,nj->bni", m[:, groups], rgb) + o[:, groups]
    torch.testing.assert_close(new, want, atol=1e-5, rtol=1e-5)


def test_body_groups_label_robot_object_table_and_background():
    model = mujoco.MjModel.from_xml_path(str(PANDA))
    stage = RenderStage(model, RenderConfig(backend="reference", image_size=16))
    groups, scene = stage.groups, stage.scene
    cube = model.body("cube").id
    assert (groups[scene.body_ids == cube] == GROUPS.index("object")).all()
    assert (groups[scene.body_ids == model.body("hand").id] == GROUPS.index("robot")).all()
    world = scene.body_ids == 0
    on_table = world & (np.abs(scene.means[:, 2]) < 0.005) & (np.abs(scene.means[:, 0] - 0.35) < 0.5)
    on_wall = world & (scene.means[:, 0] < -0.42)
    assert (groups[on_table] == GROUPS.index("table")).all() and on_table.sum() > 100
    assert (groups[on_wall] == GROUPS.index("background")).all() and on_wall.sum() > 100


def test_off_gives_todays_frames_bitwise_and_identity_values_change_no_bit():
    kw = dict(num_envs=2, physics="mujoco", obs_mode="pixels", render_backend="reference", image_size=16,
              array_backend="numpy")  # fmt: skip
    plain = gym.make_vec("serl_gs/CartpoleBalance-v0", **kw)
    off = gym.make_vec("serl_gs/CartpoleBalance-v0", randomize="none", **kw)
    strong = gym.make_vec("serl_gs/CartpoleBalance-v0", randomize="strong", **kw)
    frames = [env.reset(seed=3)[0]["pixels/fixed"] for env in (plain, off, strong)]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])
    np.testing.assert_array_equal(strong.reset(seed=3)[0]["pixels/fixed"], frames[2])  # same seed, same draws
    assert not np.array_equal(frames[2][0], frames[2][1])
    # The apply path itself with identity values: the same bits as no randomization at all.
    poses = plain.body_poses()
    stage = plain.renderer
    np.testing.assert_array_equal(stage.render(*poses, visual=identity_draw(2, 1)), stage.render(*poses))
    for env in (plain, off, strong):
        env.close()


@pytest.mark.slow  # gsplat's Python over the stand-in: ~15 s of CPU
def test_per_env_colours_render_the_same_on_gsplat_and_reference(monkeypatch):
    pytest.importorskip("gsplat")
    import gsplat_standin

    gsplat_standin.install(monkeypatch)
    model = mujoco.MjModel.from_xml_path(str(PANDA.with_name("cartpole.xml")))
    small = SceneConfig(cache_dir=None, density=300.0)  # no probe (reference), a small scene: gsplat's Python is slow
    stage = RenderStage(model, RenderConfig(backend="reference", image_size=12, device="cpu"), scene_config=small)
    qpos = np.repeat(model.qpos0[None], 2, 0)
    poses = [torch.as_tensor(p, dtype=torch.float32) for p in poses_from_qpos(model, qpos)]
    c = RandomizeConfig(brightness=0.3, hue_deg=20, appearance_prob=1.0, camera_position=0.02, focal=0.05)
    draw = draw_visual(c, _keys(2), jnp.zeros(2, jnp.int32), 1, stage.group_luma)
    visual = stage._visual_on(draw, torch.device("cpu"), 2)
    with torch.no_grad():
        got, _ = stage._draw("gsplat", *poses, False, visual)
        want, _ = stage._draw("reference", *poses, False, visual)
        plain, _ = stage._draw("reference", *poses, False)
    assert (got - want).abs().max().item() <= 2e-5
    assert (want - plain).abs().max().item() > 0.1


def test_rendered_rows_take_the_keys_of_their_episodes():
    from serl_gs.vec_batches import _row_keys

    first = {"rng": jnp.arange(6, dtype=jnp.uint32).reshape(3, 2), "step": jnp.asarray([4, 5, 6], jnp.int32)}
    new = {"rng": 100 + first["rng"], "step": jnp.zeros(3, jnp.int32)}
    # MJX: the B envs at the end of the step, then the first frames of new episodes (env 1; 3 = unused row).
    keys, steps = _row_keys(first, new, jnp.asarray([1, 3], jnp.int32))
    np.testing.assert_array_equal(np.asarray(keys), [[0, 1], [2, 3], [4, 5], [102, 103], [104, 105]])
    np.testing.assert_array_equal(np.asarray(steps), [4, 5, 6, 0, 0])
