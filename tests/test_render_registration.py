"""Placing captures: similarity fits from point pairs and planes recover known transforms, reject degenerate
input, and write into the manifest the env loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from captures import ball_capture, write_tool_ply

from serl_gs.render import registration as reg
from serl_gs.render.manifest import load_scene_manifest, read_manifest
from serl_gs.render.scene import quat_to_matrix


def known_similarity(seed=0) -> reg.Similarity:
    rng = np.random.default_rng(seed)
    return reg.Similarity(0.37, quat_to_matrix(rng.normal(size=4)), rng.normal(size=3))


def assert_same(a: reg.Similarity, b: reg.Similarity, atol=1e-9):
    np.testing.assert_allclose(a.scale, b.scale, atol=atol)
    np.testing.assert_allclose(a.rotation, b.rotation, atol=atol)
    np.testing.assert_allclose(a.translation, b.translation, atol=atol)


def test_point_pairs_recover_a_known_similarity_and_never_a_mirror():
    truth = known_similarity()
    capture = np.random.default_rng(1).normal(size=(5, 3))
    fit = reg.fit_similarity(capture, truth.apply(capture))
    assert_same(fit, truth)
    assert reg.residual_rms(fit, capture, truth.apply(capture)) < 1e-9
    noisy = truth.apply(capture) + np.random.default_rng(2).normal(0, 1e-3, (5, 3))
    assert reg.residual_rms(reg.fit_similarity(capture, noisy), capture, noisy) < 2e-3
    mirrored = capture * [1, 1, -1]  # a reflection fits best; the answer must still be a rotation
    fit = reg.fit_similarity(capture, mirrored)
    np.testing.assert_allclose(np.linalg.det(fit.rotation), 1.0, atol=1e-9)
    # The manifest's quaternion is the same rotation.
    np.testing.assert_allclose(quat_to_matrix(np.array(truth.transform().rotation_wxyz)), truth.rotation, atol=1e-9)


def test_degenerate_input_raises_errors_that_say_why():
    line = np.outer(np.arange(4.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lie on one line"):
        reg.fit_similarity(line, line + 1)
    with pytest.raises(ValueError, match=r"need 3\+ point pairs, got 2"):
        reg.fit_similarity(np.eye(3)[:2], np.eye(3)[:2])
    with pytest.raises(ValueError, match="two \\[N, 3\\] arrays of equal N"):
        reg.fit_similarity(np.eye(3), np.eye(4)[:, :3])
    with pytest.raises(ValueError, match="not parallel to the plane"):
        reg.level_plane(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), [1, 0, 0])


def inverse(s: reg.Similarity) -> reg.Similarity:
    return reg.Similarity(1 / s.scale, s.rotation.T, -s.rotation.T @ s.translation / s.scale)


def table_capture(truth: reg.Similarity, n=200, seed=3):
    """Points of a table top at z = 0.1 in the sim, and the same points in the capture's frame."""
    rng = np.random.default_rng(seed)
    sim = np.column_stack([rng.uniform(-0.5, 0.5, (n, 2)), np.full(n, 0.1)])
    return sim, inverse(truth).apply(sim)


def test_a_plane_levels_the_table_and_two_pairs_fix_the_rest():
    truth = known_similarity(seed=4)
    _, capture_table = table_capture(truth)
    up = truth.rotation.T @ [0, 0, 1]  # the capture's up, as a user would say it roughly
    level = reg.level_plane(capture_table, up + 0.3, height=0.1)
    np.testing.assert_allclose(level.apply(capture_table)[:, 2], 0.1, atol=1e-9)
    above = level.apply(capture_table.mean(0) + up)  # a point above the table stays above it
    assert above[2] > 0.1 + 0.5
    corners_sim = np.array([[0.5, 0.4, 0.1], [-0.5, 0.4, 0.1]])  # two table corners picked in both frames
    corners_capture = inverse(truth).apply(corners_sim)
    fit = reg.fit_on_plane(capture_table, up, corners_capture, corners_sim, height=0.1)
    assert_same(fit, truth, atol=1e-8)


def test_dominant_plane_finds_the_table_among_clutter():
    rng = np.random.default_rng(5)
    table = np.column_stack([rng.uniform(-1, 1, (300, 2)), rng.normal(0, 0.002, 300)])
    clutter = rng.uniform(-1, 1, (100, 3)) + [0, 0, 1.1]
    mask = reg.dominant_plane(np.concatenate([table, clutter]), threshold=0.01)
    assert mask[:300].mean() > 0.97 and not mask[300:].any()


def test_the_command_writes_the_fit_into_the_manifest(tmp_path, capsys):
    truth = known_similarity(seed=6)
    write_tool_ply(tmp_path / "ball.ply", ball_capture(n=50, degree=1), normals=True)
    (tmp_path / "scene.json").write_text(
        json.dumps({"format": "serl_gs.scene/1", "parts": [{"ply": "ball.ply", "body": 0}]})
    )
    capture = np.random.default_rng(7).normal(size=(4, 3))
    pairs = {"capture": capture.tolist(), "sim": truth.apply(capture).tolist()}
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    assert reg.main([str(tmp_path / "scene.json"), "--ply", "ball.ply", "--pairs", str(tmp_path / "pairs.json")]) == 0
    assert "rms" in capsys.readouterr().err
    (part,) = read_manifest(tmp_path / "scene.json")
    np.testing.assert_allclose(part.transform.scale, truth.scale, rtol=1e-9)
    placed = load_scene_manifest(tmp_path / "scene.json")
    original = ball_capture(n=50, degree=1)
    np.testing.assert_allclose(placed.means, truth.apply(original.means), atol=1e-5)
    with pytest.raises(SystemExit):
        reg.main([str(tmp_path / "scene.json"), "--ply", "nope.ply", "--pairs", str(tmp_path / "pairs.json")])
