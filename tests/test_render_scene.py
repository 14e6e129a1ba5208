"""Scenes generated from MJCF geoms: on every geom type's surface, bound to the right body, coloured from
rgba, deterministic, cached on disk by a hash of the model and the settings."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import mujoco
import numpy as np
import pytest

from serl_gs.render import generate
from serl_gs.render.config import SceneConfig
from serl_gs.render.scene import SH_C0, quat_to_matrix

ALL_GEOMS = """
<mujoco>
  <asset>
    <mesh name="tet" vertex="0.05 0.05 0.05  -0.05 -0.05 0.05  -0.05 0.05 -0.05  0.05 -0.05 -0.05"/>
    <material name="green" rgba="0.1 0.8 0.2 1"/>
  </asset>
  <worldbody>
    <geom name="plane" type="plane" size="0.5 0.4 0.1" rgba="0.7 0.6 0.5 1"/>
    <geom name="hidden" type="box" size="0.1 0.1 0.1" group="3"/>
    <geom name="clear" type="sphere" size="0.1" rgba="1 1 1 0"/>
    <body name="b_box" pos="0.1 0.2 0.3" quat="0.9 0.1 0.3 0.2">
      <geom name="box" type="box" size="0.04 0.03 0.02" pos="0.01 0 0.02" quat="0.8 0.4 0 0.2"
            rgba="0.9 0.1 0.1 1"/>
    </body>
    <body name="b_sphere" pos="0 0 1">
      <geom name="sphere" type="sphere" size="0.05" pos="0 0.1 0"/>
    </body>
    <body name="b_capsule" pos="0 1 0">
      <geom name="capsule" type="capsule" fromto="0 0 0 0.1 0.1 0" size="0.02"/>
    </body>
    <body name="b_cylinder" pos="1 0 0">
      <geom name="cylinder" type="cylinder" size="0.03 0.05" quat="0.7 0.7 0 0"/>
    </body>
    <body name="b_ellipsoid" pos="1 1 0">
      <geom name="ellipsoid" type="ellipsoid" size="0.05 0.03 0.02"/>
    </body>
    <body name="b_mesh" pos="-1 0 0"><geom name="mesh" type="mesh" mesh="tet" material="green"/></body>
  </worldbody>
</mujoco>
"""

FLAT = SceneConfig(texture=0.0, shading=0.0, cache_dir=None, density=20_000.0, max_per_geom=20_000)


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_string(ALL_GEOMS)


@pytest.fixture(scope="module")
def scene(model):
    return generate.generate_scene(model, FLAT)


def geom_frame_points(model, scene, name):
    """Means of the named geom's Gaussians (one geom per body here) in that geom's own frame."""
    geom = model.geom(name)
    body = model.geom_bodyid[geom.id]
    rot = quat_to_matrix(model.geom_quat[geom.id])
    pts = scene.means[scene.body_ids == body].astype(np.float64)
    return (pts - model.geom_pos[geom.id]) @ rot, scene.quats[scene.body_ids == body]


def test_every_visible_geom_type_gets_gaussians_on_its_surface(model, scene):
    size = {name: model.geom(name).size for name in ("box", "sphere", "capsule", "cylinder", "ellipsoid")}
    p, _ = geom_frame_points(model, scene, "plane")
    assert len(p) > 100 and np.abs(p[:, 2]).max() < 1e-6
    assert np.abs(p[:, 0]).max() <= 0.5 + 1e-6 and np.abs(p[:, 1]).max() <= 0.4 + 1e-6
    p, _ = geom_frame_points(model, scene, "box")
    np.testing.assert_allclose(np.abs(p / size["box"]).max(axis=1), 1.0, atol=1e-5)
    p, quats = geom_frame_points(model, scene, "sphere")
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), size["sphere"][0], atol=1e-6)
    # Discs lie flat on the surface: each Gaussian's thin (local z) axis is the sphere's normal.
    thin_axis = quat_to_matrix(quats)[:, :, 2]
    rot = quat_to_matrix(model.geom_quat[model.geom("sphere").id])
    normals = p / np.linalg.norm(p, axis=1, keepdims=True) @ rot.T
    np.testing.assert_allclose(np.abs((thin_axis * normals).sum(1)), 1.0, atol=1e-5)
    p, _ = geom_frame_points(model, scene, "capsule")
    r, h = size["capsule"][:2]
    axis_dist = np.linalg.norm(p - np.clip(p[:, 2], -h, h)[:, None] * [0, 0, 1], axis=1)
    np.testing.assert_allclose(axis_dist, r, atol=1e-6)
    p, _ = geom_frame_points(model, scene, "cylinder")
    r, h = size["cylinder"][:2]
    on_side = np.isclose(np.hypot(p[:, 0], p[:, 1]), r, atol=1e-6) & (np.abs(p[:, 2]) <= h + 1e-6)
    on_cap = np.isclose(np.abs(p[:, 2]), h, atol=1e-6) & (np.hypot(p[:, 0], p[:, 1]) <= r + 1e-6)
    assert (on_side | on_cap).all() and on_side.any() and on_cap.any()
    p, _ = geom_frame_points(model, scene, "ellipsoid")
    np.testing.assert_allclose(((p / size["ellipsoid"]) ** 2).sum(1), 1.0, atol=1e-5)
    p, _ = geom_frame_points(model, scene, "mesh")
    verts = model.mesh_vert[: model.mesh_vertnum[0]]
    faces = model.mesh_face[: model.mesh_facenum[0]]
    normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    plane_dist = np.abs(np.einsum("nfk,fk->nf", p[:, None] - verts[faces[:, 0]][None], normals))
    assert plane_dist.min(axis=1).max() < 1e-6  # every point lies on one of the tetrahedron's faces


def test_invisible_geoms_are_skipped_and_bodies_are_bound(model, scene):
    counts = np.bincount(scene.body_ids, minlength=model.nbody)
    assert (counts > 0).all()  # the world (plane) and every body
    world_points = scene.means[scene.body_ids == 0]
    assert np.abs(world_points[:, 2]).max() < 1e-6  # only the plane: group-3 box and clear sphere skipped


def test_colours_come_from_rgba_and_material(model, scene):
    def rgb(body_name):
        body = model.body(body_name).id
        return SH_C0 * scene.sh[scene.body_ids == body, 0] + 0.5

    np.testing.assert_allclose(rgb("b_box"), np.broadcast_to([0.9, 0.1, 0.1], rgb("b_box").shape), atol=1e-6)
    np.testing.assert_allclose(rgb("b_mesh"), np.broadcast_to([0.1, 0.8, 0.2], rgb("b_mesh").shape), atol=1e-6)
    textured = generate.generate_scene(model, dataclasses.replace(FLAT, texture=0.3, shading=0.5))
    body = model.body("b_box").id
    varied = SH_C0 * textured.sh[textured.body_ids == body, 0] + 0.5
    assert varied.std(axis=0).min() > 0.005  # the texture varies across the surface
    np.testing.assert_allclose(varied.mean(axis=0) / varied.mean(axis=0)[0], [1.0, 0.1 / 0.9, 0.1 / 0.9], atol=0.05)


def test_generation_is_deterministic_and_seeded(model):
    a = generate.generate_scene(model, FLAT)
    b = generate.generate_scene(model, FLAT)
    c = generate.generate_scene(model, dataclasses.replace(FLAT, seed=1))
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "body_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.means, c.means)


def test_density_controls_the_count(model):
    few = generate.generate_scene(model, dataclasses.replace(FLAT, density=1_000.0))
    many = generate.generate_scene(model, dataclasses.replace(FLAT, density=4_000.0))
    plane_few, plane_many = (np.sum(s.body_ids == 0) for s in (few, many))
    assert plane_many == pytest.approx(4 * plane_few, rel=0.05)  # 0.8 m^2 of plane


def test_scene_cache_on_disk_is_keyed_by_model_and_settings(model, tmp_path, monkeypatch):
    config = dataclasses.replace(FLAT, cache_dir=str(tmp_path))
    monkeypatch.setattr(generate, "_MEMORY_CACHE", {})
    first = generate.scene_for_model(model, config)
    files = list(tmp_path.glob("*.ply"))
    assert len(files) == 1 and files[0].stem == generate.scene_cache_key(model, config)

    def no_generation(*args):
        raise AssertionError("should have been read from the disk cache")

    monkeypatch.setattr(generate, "_MEMORY_CACHE", {})
    monkeypatch.setattr(generate, "generate_scene", no_generation)
    again = generate.scene_for_model(model, config)
    np.testing.assert_array_equal(first.means, again.means)
    assert generate.scene_cache_key(model, dataclasses.replace(config, density=1.0)) != files[0].stem
    other = mujoco.MjModel.from_xml_string(ALL_GEOMS.replace('size="0.05" pos="0 0.1 0"', 'size="0.06"'))
    assert generate.scene_cache_key(other, config) != files[0].stem


def test_a_damaged_cache_file_is_regenerated(model, tmp_path, monkeypatch):
    config = dataclasses.replace(FLAT, cache_dir=str(tmp_path))
    monkeypatch.setattr(generate, "_MEMORY_CACHE", {})
    path = tmp_path / f"{generate.scene_cache_key(model, config)}.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n")
    scene = generate.scene_for_model(model, config)
    assert scene.num_gaussians > 0
    assert generate.read_ply(path).num_gaussians == scene.num_gaussians  # rewritten


TASK_ASSETS = sorted((Path(__file__).resolve().parents[1] / "envs" / "assets").glob("*.xml"))


@pytest.mark.parametrize("path", TASK_ASSETS, ids=[p.stem for p in TASK_ASSETS])
def test_every_task_model_has_a_scene(path):
    model = mujoco.MjModel.from_xml_path(str(path))
    scene = generate.generate_scene(model, dataclasses.replace(SceneConfig(), cache_dir=None))
    assert scene.num_gaussians > 1000
    bodies_with_geoms = {int(model.geom_bodyid[g]) for g in range(model.ngeom) if model.geom_group[g] < 3}
    assert bodies_with_geoms <= set(np.unique(scene.body_ids).tolist())


PANDA = Path(__file__).resolve().parents[1] / "envs" / "assets" / "panda_pick_cube.xml"


@pytest.mark.skipif(not PANDA.exists(), reason="envs/assets/panda_pick_cube.xml not present")
def test_front_camera_shows_the_cube_table_and_arm():
    from serl_gs.render.config import RenderConfig
    from serl_gs.render.stage import RenderStage

    model = mujoco.MjModel.from_xml_path(str(PANDA))
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    mujoco.mj_forward(model, data)
    stage = RenderStage(
        model,
        RenderConfig(backend="reference", image_size=64, cameras=("front",)),
        scene_config=SceneConfig(cache_dir=None),  # the default look: texture and baked light
    )
    image = stage.render(data.xpos[None], data.xquat[None], data.cam_xpos[None], data.cam_xmat[None])[0, 0]
    cam = model.camera("front").id
    rot, focal = data.cam_xmat[cam].reshape(3, 3), 32 / math.tan(math.radians(model.cam_fovy[cam]) / 2)

    def pixel(point):  # MuJoCo camera: looks along -z, +y up
        x, y, z = rot.T @ (np.asarray(point) - data.cam_xpos[cam])
        return image[int(32 - focal * y / -z), int(32 + focal * x / -z)].astype(int)

    r, g, b = pixel(data.xpos[model.body("cube").id])
    assert r > 120 and g < 60 and b < 60  # the red cube
    r, g, b = pixel([0.7, 0.25, 0.0])
    assert r > g > b and r > 100  # the wooden table top
    r, g, b = pixel(data.xpos[model.body("link1").id] - [0.0, 0.0, 0.1])
    assert min(r, g, b) > 120 and max(r, g, b) - min(r, g, b) < 30  # the light grey arm
