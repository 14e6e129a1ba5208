""".ply I/O: exact round trip, layouts other 3DGS tools write, clear errors, body-binding manifests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from captures import write_tool_ply

from serl_gs.render.manifest import load_scene_manifest, save_scene_manifest
from serl_gs.render.ply import read_ply, write_ply
from serl_gs.render.scene import GaussianScene, concat_scenes, quat_to_matrix


def make_scene(n=7, degree=3, seed=0, bodies=None) -> GaussianScene:
    rng = np.random.default_rng(seed)
    return GaussianScene(
        means=rng.normal(size=(n, 3)),
        quats=rng.normal(size=(n, 4)),
        log_scales=rng.normal(-3, 1, size=(n, 3)),
        opacity_logits=rng.normal(size=n),
        sh=rng.normal(size=(n, (degree + 1) ** 2, 3)),
        body_ids=rng.integers(0, 4, n) if bodies is None else bodies,
    )


def assert_same(a: GaussianScene, b: GaussianScene, check_bodies=True):
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh") + (("body_ids",) if check_bodies else ()):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_round_trip_is_exact(tmp_path):
    scene = make_scene(degree=3)
    write_ply(tmp_path / "a.ply", scene)
    loaded = read_ply(tmp_path / "a.ply")
    assert_same(scene, loaded)
    write_ply(tmp_path / "b.ply", loaded)
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()


def test_inria_layout_with_normals_loads(tmp_path):
    scene = make_scene(degree=3, bodies=np.zeros(7, np.int32))
    write_tool_ply(tmp_path / "inria.ply", scene, normals=True)
    assert_same(scene, read_ply(tmp_path / "inria.ply"))  # no body_id column: bound to the world
    assert (read_ply(tmp_path / "inria.ply", body_id=3).body_ids == 3).all()


def test_gsplat_exporter_layout_without_normals_loads(tmp_path):
    scene = make_scene(degree=1, bodies=np.zeros(7, np.int32))
    write_tool_ply(tmp_path / "gsplat.ply", scene, normals=False)
    loaded = read_ply(tmp_path / "gsplat.ply")
    assert loaded.sh_degree == 1
    assert_same(scene, loaded)


def test_ascii_and_big_endian_files_with_extra_properties_load(tmp_path):
    scene = make_scene(degree=0, bodies=np.zeros(7, np.int32))
    extra = [("red", np.full(7, 200, np.uint8))]  # e.g. a viewer's preview colour: ignored
    write_tool_ply(tmp_path / "be.ply", scene, normals=True, fmt="binary_big_endian", extra=extra)
    assert_same(scene, read_ply(tmp_path / "be.ply"))
    write_tool_ply(tmp_path / "ascii.ply", scene, normals=False, fmt="ascii", extra=extra)
    assert_same(scene, read_ply(tmp_path / "ascii.ply"))


def test_truncated_file_names_the_file_and_the_shortfall(tmp_path):
    write_ply(tmp_path / "t.ply", make_scene())
    data = (tmp_path / "t.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"t\.ply: truncated: .* but only"):
        read_ply(tmp_path / "t.ply")
    (tmp_path / "h.ply").write_bytes(data[:40])  # cut inside the header
    with pytest.raises(ValueError, match=r"h\.ply: .*end_header"):
        read_ply(tmp_path / "h.ply")


@pytest.mark.parametrize(
    "header, problem",
    [
        ("solid mesh\n", "not a PLY file"),
        ("ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n", "unsupported format"),
        ("ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex' element"),
        ("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n", "lacks properties"),
        (
            "ply\nformat ascii 1.0\nelement vertex 0\nproperty quaternion x\nend_header\n",
            "malformed property",
        ),
        ("ply\nformat ascii 1.0\nelement vertex many\nend_header\n", "malformed element"),
    ],
)
def test_malformed_headers_name_the_file_and_the_problem(tmp_path, header, problem):
    (tmp_path / "bad.ply").write_bytes(header.encode())
    with pytest.raises(ValueError, match=rf"bad\.ply: .*{problem}"):
        read_ply(tmp_path / "bad.ply")


def test_non_finite_values_and_bad_sh_counts_are_rejected(tmp_path):
    scene = make_scene(degree=0, bodies=np.zeros(7, np.int32))
    write_tool_ply(tmp_path / "nan.ply", scene, normals=False, extra=[])
    data = bytearray((tmp_path / "nan.ply").read_bytes())
    data[-4:] = np.array([np.nan], "<f4").tobytes()  # the last rot_3
    (tmp_path / "nan.ply").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"nan\.ply: quats contains NaN"):
        read_ply(tmp_path / "nan.ply")
    write_tool_ply(tmp_path / "rest.ply", scene, normals=False, extra=[("f_rest_0", np.zeros(7, np.float32))])
    with pytest.raises(ValueError, match=r"rest\.ply: 1 f_rest_\* properties"):
        read_ply(tmp_path / "rest.ply")


def test_manifest_binds_parts_to_bodies_and_places_a_capture(tmp_path):
    background = make_scene(n=5, degree=1, seed=1, bodies=np.zeros(5, np.int32))
    cube = make_scene(n=3, degree=0, seed=2, bodies=np.zeros(3, np.int32))
    write_tool_ply(tmp_path / "lab.ply", background, normals=True)
    write_tool_ply(tmp_path / "cube.ply", cube, normals=False)
    half_turn_z = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]  # 90 degrees about z
    manifest = {
        "format": "serl_gs.scene/1",
        "parts": [
            {"ply": "lab.ply", "body": "world",
             "transform": {"rotation_wxyz": half_turn_z, "translation": [1, 2, 3], "scale": 2.0}},
            {"ply": "cube.ply", "body": "cube"},
        ],
    }  # fmt: skip
    (tmp_path / "scene.json").write_text(json.dumps(manifest))
    scene = load_scene_manifest(tmp_path / "scene.json", {"world": 0, "cube": 4})
    assert scene.num_gaussians == 8 and scene.sh_degree == 1
    np.testing.assert_array_equal(scene.body_ids, [0] * 5 + [4] * 3)
    rot = quat_to_matrix(np.array(half_turn_z))
    np.testing.assert_allclose(scene.means[:5], 2.0 * background.means @ rot.T + [1, 2, 3], atol=1e-5)
    np.testing.assert_allclose(scene.log_scales[:5], background.log_scales + math.log(2.0), atol=1e-6)
    # Each Gaussian's own axes turn with the capture: R(q_new) = R(placement) R(q_old).
    np.testing.assert_allclose(
        quat_to_matrix(scene.quats[:5]), rot @ quat_to_matrix(background.quats), atol=1e-5
    )  # fmt: skip
    np.testing.assert_array_equal(scene.sh[5:, 1:], 0)  # the degree-0 part is padded to degree 1
    with pytest.raises(ValueError, match=r"names body 'gripper'; known bodies: \['cube', 'world'\]"):
        manifest["parts"][1]["body"] = "gripper"
        (tmp_path / "scene.json").write_text(json.dumps(manifest))
        load_scene_manifest(tmp_path / "scene.json", {"world": 0, "cube": 4})


def test_saved_manifest_round_trips_with_body_names(tmp_path):
    scene = make_scene(n=12, degree=2, bodies=np.array([0, 2, 2, 0, 1, 1, 1, 2, 0, 0, 1, 2]))
    path = save_scene_manifest(tmp_path / "parts", scene, ["world", "arm", "cube"])
    loaded = load_scene_manifest(path, {"world": 0, "arm": 1, "cube": 2})
    order = np.argsort(scene.body_ids, kind="stable")  # parts are written body by body
    assert_same(scene.subset(order), loaded)


def test_write_ply_keeps_every_property_it_read(tmp_path):
    scene = make_scene(n=6, degree=3, bodies=np.zeros(6, np.int32))
    normals = np.random.default_rng(3).normal(size=(6, 3))
    extra = [
        ("red", np.arange(6, dtype=np.uint8) * 40),  # a viewer's preview colour
        ("confidence", np.linspace(0.0, 1.0, 6)),  # double
        ("label", np.arange(6, dtype=np.int16) - 3),  # a segmentation label
    ]
    for fmt in ("binary_big_endian", "ascii"):
        write_tool_ply(tmp_path / "in.ply", scene, normals=normals, fmt=fmt, extra=extra)
        loaded = read_ply(tmp_path / "in.ply")
        assert list(loaded.extras) == ["nx", "ny", "nz", "red", "confidence", "label"]
        np.testing.assert_array_equal(loaded.extras["ny"], normals[:, 1].astype(np.float32))
        for name, values in extra:
            assert loaded.extras[name].dtype == values.dtype, name
            np.testing.assert_array_equal(loaded.extras[name], values, err_msg=name)
        write_ply(tmp_path / "out.ply", loaded)
        again = read_ply(tmp_path / "out.ply")
        assert_same(loaded, again)
        for name, values in loaded.extras.items():
            assert again.extras[name].dtype == values.dtype
            np.testing.assert_array_equal(again.extras[name], values, err_msg=name)
        header = (tmp_path / "out.ply").read_bytes().split(b"end_header")[0].decode()
        props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
        assert props[:6] == ["x", "y", "z", "nx", "ny", "nz"], "normals where INRIA writes them"
        assert props[-4:] == ["red", "confidence", "label", "body_id"]
        for line in ("property uchar red", "property double confidence", "property short label"):
            assert line in header


def test_extras_follow_subsets_merges_and_placements():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(4, 3))
    label = np.array([5, 6, 7, 8], np.int16)
    capture = GaussianScene(
        **{k: getattr(make_scene(n=4, degree=1), k) for k in ("means", "quats", "log_scales", "opacity_logits", "sh")},
        body_ids=np.zeros(4, np.int32),
        extras={"nx": normals[:, 0], "ny": normals[:, 1], "nz": normals[:, 2], "label": label},
    )
    generated = make_scene(n=3, degree=0, seed=1)  # no extras: zeros in the merged scene
    merged = concat_scenes([capture, generated])
    assert list(merged.extras) == ["nx", "ny", "nz", "label"] and merged.extras["label"].dtype == np.int16
    np.testing.assert_array_equal(merged.extras["label"], [5, 6, 7, 8, 0, 0, 0])
    np.testing.assert_array_equal(merged.subset(np.array([1, 5])).extras["label"], [6, 0])
    quarter_turn_z = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]
    placed = capture.transformed(rotation_wxyz=quarter_turn_z, translation=[1, 0, 0], scale=3.0)
    turned = np.stack([placed.extras[k] for k in ("nx", "ny", "nz")], -1)
    np.testing.assert_allclose(turned, normals @ quat_to_matrix(np.array(quarter_turn_z)).T, atol=1e-6)
    np.testing.assert_array_equal(placed.extras["label"], label)
    base = {k: getattr(generated, k) for k in ("means", "quats", "log_scales", "opacity_logits", "sh", "body_ids")}
    with pytest.raises(ValueError, match="extra property 'opacity' clashes"):
        GaussianScene(**base, extras={"opacity": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"extra property 'label' must have shape \[3\], got \(2,\)"):
        GaussianScene(**base, extras={"label": np.zeros(2, np.int16)})
    with pytest.raises(ValueError, match="extra property 'big' has dtype int64"):
        GaussianScene(**base, extras={"big": np.zeros(3, np.int64)})
