""".ply I/O: exact round trip, layouts other 3DGS tools write, clear errors, body-binding manifests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from serl_gs.render.ply import load_scene_manifest, read_ply, save_scene_manifest, write_ply
from serl_gs.render.scene import GaussianScene, quat_to_matrix


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


def write_tool_ply(path, scene: GaussianScene, *, normals: bool, fmt="binary_little_endian", extra=()):
    """A .ply laid out the way a 3DGS tool writes it: the INRIA trainer (with nx ny nz) or gsplat's
    exporter (without); f_rest_* channel-major. `extra` adds (name, dtype, values) vertex properties."""
    n, k = scene.num_gaussians, scene.sh.shape[1]
    cols = [("x", scene.means[:, 0]), ("y", scene.means[:, 1]), ("z", scene.means[:, 2])]
    if normals:
        cols += [(name, np.zeros(n, np.float32)) for name in ("nx", "ny", "nz")]
    cols += [(f"f_dc_{c}", scene.sh[:, 0, c]) for c in range(3)]
    rest = scene.sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)
    cols += [(f"f_rest_{i}", rest[:, i]) for i in range(3 * (k - 1))]
    cols += [("opacity", scene.opacity_logits)]
    cols += [(f"scale_{i}", scene.log_scales[:, i]) for i in range(3)]
    cols += [(f"rot_{i}", scene.quats[:, i]) for i in range(4)]
    types = {np.dtype(np.float32): "float", np.dtype(np.uint8): "uchar", np.dtype(np.float64): "double"}
    cols = [(name, values.astype(np.float32)) for name, values in cols] + list(extra)
    header = f"ply\nformat {fmt} 1.0\ncomment written by a test\nelement vertex {n}\n"
    header += "".join(f"property {types[v.dtype]} {name}\n" for name, v in cols) + "end_header\n"
    if fmt == "ascii":
        body = "".join(" ".join(repr(float(v[i])) for _, v in cols) + "\n" for i in range(n)).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        table = np.empty(n, [(name, order + v.dtype.str[1:]) for name, v in cols])
        for name, v in cols:
            table[name] = v
        body = table.tobytes()
    path.write_bytes(header.encode() + body)


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
