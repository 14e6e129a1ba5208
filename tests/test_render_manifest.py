"""Users' captures in a task from one option: a manifest binds .ply parts to bodies, replacing or adding to
the generated scene, placed and cropped; `scene=` puts them in the env's frames, where they move with
their bodies."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from captures import ball_capture, write_tool_ply

import envs  # noqa: F401  (registers the serl_gs/* ids)
from envs.cartpole import CartpoleBalance
from serl_gs.render.generate import scene_for_model
from serl_gs.render.manifest import read_manifest, scene_with_captures

BLUE, GREEN = (0.1, 0.2, 0.95), (0.1, 0.9, 0.1)


def write_scene(folder, parts) -> str:
    """A blue ball standing in for cartpole's cart and a green ball added to the world, as INRIA .ply files."""
    write_tool_ply(folder / "blue.ply", ball_capture(radius=0.15, n=300, rgb=BLUE, degree=3), normals=True)
    write_tool_ply(folder / "green.ply", ball_capture(radius=0.1, n=200, rgb=GREEN), normals=False)
    (folder / "scene.json").write_text(json.dumps({"format": "serl_gs.scene/1", "parts": parts}))
    return str(folder / "scene.json")


CART_AND_BACKDROP = [
    {"ply": "blue.ply", "body": "cart", "transform": {"translation": [0, 0, 0.05]}},  # replaces the cart
    {"ply": "green.ply", "body": "world", "mode": "add", "transform": {"translation": [1.2, 0, 1.6], "scale": 2}},
]


def test_replace_drops_the_bodys_generated_gaussians_and_add_keeps_them(tmp_path):
    model = CartpoleBalance().mj_model
    cart, world = model.body("cart").id, 0
    generated = scene_for_model(model)
    scene = scene_with_captures(model, write_scene(tmp_path, CART_AND_BACKDROP))
    counts = {b: int((scene.body_ids == b).sum()) for b in (world, cart)}
    assert counts[cart] == 300, "only the capture is left on the cart"
    assert counts[world] == int((generated.body_ids == world).sum()) + 200, "the backdrop joins the floor"
    assert scene.sh_degree == 3 and "nx" in scene.extras
    np.testing.assert_allclose(scene.means[scene.body_ids == cart].mean(0), [0, 0, 0.05], atol=1e-3)
    pole = model.body("pole_1").id
    assert (scene.body_ids == pole).sum() == (generated.body_ids == pole).sum(), "other bodies keep theirs"


def test_crops_cut_parts_of_a_capture_in_the_sim_frame(tmp_path):
    parts = [{"ply": "green.ply", "body": "world", "transform": {"translation": [0, 0, 1]},
              "crop": {"keep": [[-1, -1, 0.95], [1, 1, 2]], "remove": [[[0, -1, 0], [1, 1, 2]]]}}]  # fmt: skip
    scene = scene_with_captures(CartpoleBalance().mj_model, write_scene(tmp_path, parts))
    ball = scene.means[scene.body_ids == 0]
    ball = ball[np.linalg.norm(ball - [0, 0, 1], axis=1) < 0.11]  # the capture among the world's Gaussians
    assert len(ball) > 50 and (ball[:, 2] >= 0.95).all() and (ball[:, 0] < 0).all()


@pytest.mark.parametrize(
    "part, problem",
    [
        ({"ply": "blue.ply", "body": "handle"}, r"names body 'handle'; known bodies: \['cart', 'pole_1', 'world'\]"),
        ({"ply": "blue.ply", "body": "cart", "mode": "merge"}, r"mode must be one of \('replace', 'add'\)"),
        ({"ply": "blue.ply", "body": "cart", "transform": {"scale": 2, "shear": 1}}, "transform must be an object"),
        ({"ply": "blue.ply", "body": "cart", "crop": {"keep": [[1, 0, 0], [0, 1, 1]]}}, "min corner .* exceeds"),
        ({"ply": "blue.ply", "body": "cart", "crop": {"keep": [[5, 5, 5], [6, 6, 6]]}}, "crop leaves none"),
        ({"ply": "missing.ply", "body": "cart"}, "missing.ply"),
        ({"ply": "blue.ply", "body": "cart", "colour": "red"}, r"unknown keys \['colour'\]"),
    ],
)
def test_bad_manifests_raise_errors_naming_the_part_and_value(tmp_path, part, problem):
    with pytest.raises((ValueError, FileNotFoundError), match=problem):
        scene_with_captures(CartpoleBalance().mj_model, write_scene(tmp_path, [part]))


def colour_mask(frame: np.ndarray, rgb) -> np.ndarray:
    return np.abs(frame.astype(float) / 255 - rgb).max(-1) < 0.25


def test_the_scene_option_puts_captures_in_the_frames_and_they_move_with_their_bodies(tmp_path):
    manifest = write_scene(tmp_path, CART_AND_BACKDROP)
    opts = dict(physics="mujoco", render_backend="reference", episode_length=50)
    pixels = dict(obs_mode="pixels", image_size=32)
    plain = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, **pixels, **opts)
    frame_plain = np.asarray(plain.reset(seed=0)[0]["pixels/fixed"][0])
    plain.close()
    assert colour_mask(frame_plain, BLUE).sum() == 0 and colour_mask(frame_plain, GREEN).sum() == 0
    captured = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=1, scene=manifest, **pixels, **opts)
    frame = np.asarray(captured.reset(seed=0)[0]["pixels/fixed"][0])  # the policy's observation
    captured.close()
    assert colour_mask(frame, BLUE).sum() > 10 and colour_mask(frame, GREEN).sum() > 10
    # render() frames show the same scene; push the cart right: the ball standing in for it goes with it.
    env = gym.make("serl_gs/CartpoleBalance-v0", scene=manifest, render_mode="rgb_array", render_size=32, **opts)
    env.reset(seed=0)
    start = env.render()
    np.testing.assert_array_equal(colour_mask(start, BLUE), colour_mask(frame, BLUE))
    for _ in range(30):
        env.step(np.ones(1, np.float32))
    end = env.render()
    env.close()
    blue_x = [np.nonzero(colour_mask(f, BLUE))[1].mean() for f in (start, end)]
    green_x = [np.nonzero(colour_mask(f, GREEN))[1].mean() for f in (start, end)]
    assert blue_x[1] > blue_x[0] + 2, f"the cart's capture moved with it: {blue_x}"
    assert abs(green_x[1] - green_x[0]) < 0.5, f"the backdrop is bound to the world: {green_x}"


def test_saved_manifests_read_back_their_parts(tmp_path):
    (part,) = read_manifest(write_scene(tmp_path, CART_AND_BACKDROP[:1]))
    assert part.body == "cart" and part.mode == "replace" and part.transform.translation == (0, 0, 0.05)


def test_the_demo_capture_registers_back_into_the_sim_frame(tmp_path):
    """envs.demo_capture writes a stand-in capture in a COLMAP-like frame and registers it from the table's
    plane and two corners: the placed parts land where they were made, SH included."""
    from envs import demo_capture
    from envs.panda_pick_cube import PandaPickCube
    from serl_gs.render.manifest import body_name_to_id, load_part

    assert demo_capture.main(["--out", str(tmp_path), "--density", "1500"]) == 0
    truth = demo_capture.props(1500.0)
    names = body_name_to_id(PandaPickCube().mj_model)
    tabletop, room, ball = (load_part(p, names) for p in read_manifest(tmp_path / "scene.json"))
    for placed, made in ((tabletop, truth["tabletop.ply"]), (room, truth["room.ply"])):
        np.testing.assert_allclose(placed.means, made.means, atol=1e-3)  # metres
        np.testing.assert_allclose(placed.sh, made.sh, atol=1e-3)  # view-dependent colour turned back
        assert (placed.body_ids == 0).all()
    assert (ball.body_ids == names["cube"]).all()
    centre = (ball.means.min(0) + ball.means.max(0)) / 2
    np.testing.assert_allclose(centre, 0.0, atol=1e-4)  # centred on the cube's origin
    np.testing.assert_allclose(np.ptp(ball.means, axis=0), 0.05, atol=3e-3)  # a 5 cm ball, like the cube


def test_a_recorded_scene_holds_absolute_paths_and_hashes_and_notices_changed_files(tmp_path):
    from serl_gs.render.manifest import load_scene_manifest, record_scene

    manifest = write_scene(tmp_path, CART_AND_BACKDROP)
    recorded = record_scene(manifest, tmp_path / "run")
    names = {"world": 0, "cart": 1}
    original, again = load_scene_manifest(manifest, names), load_scene_manifest(recorded, names)
    np.testing.assert_array_equal(again.means, original.means)
    parts = json.loads(recorded.read_text())["parts"]
    assert all(p["ply"].startswith("/") and len(p["sha256"]) == 64 for p in parts)
    write_tool_ply(tmp_path / "blue.ply", ball_capture(radius=0.2, n=300, rgb=BLUE), normals=True)
    with pytest.raises(ValueError, match=r"blue\.ply has changed since the scene was recorded"):
        load_scene_manifest(recorded, names)


def test_nodes_envs_take_the_scene(tmp_path):
    from serl_gs.nodes.env_spec import EnvSpec

    manifest = write_scene(tmp_path, CART_AND_BACKDROP)
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", physics="mujoco", episode_length=20, scene=manifest)
    assert spec.make_kwargs()["scene"] == manifest  # what actors and eval build their envs with
    vec = spec.make_vec(1)
    assert (vec.gaussian_scene.body_ids == 1).sum() == 300, "the cart's Gaussians are the capture's"
    vec.close()


@pytest.mark.slow
def test_the_learner_records_the_scene_in_its_run_directory(tmp_path):
    """~20 s on a 2-core machine: the learner builds its networks and transport before anything else."""
    from serl_gs.agents.config import AgentConfig
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.nodes.learner import Learner, LearnerConfig
    from serl_gs.transport import LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    manifest = write_scene(tmp_path, CART_AND_BACKDROP)
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", physics="mujoco", episode_length=20, scene=manifest)
    config = LearnerConfig(
        env=spec, agent=AgentConfig(hidden_dims=(8,), critic_ensemble_size=2, batch_size=4),
        transport=LearnerTransportConfig(**port_layout(0)), run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    learner = Learner(config)
    learner.close()
    recorded = json.loads((tmp_path / "run" / "scene.json").read_text())
    assert [p["ply"].rsplit("/", 1)[-1] for p in recorded["parts"]] == ["blue.ply", "green.ply"]


def test_a_bare_ply_where_a_manifest_is_expected_is_a_capture_bound_to_the_world(tmp_path):
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.render.manifest import record_scene

    write_scene(tmp_path, CART_AND_BACKDROP)
    (tmp_path / "world.json").write_text(
        json.dumps({"format": "serl_gs.scene/1", "parts": [{"ply": "green.ply", "body": "world"}]})
    )
    model = CartpoleBalance().mj_model
    bare = scene_with_captures(model, tmp_path / "green.ply")
    as_manifest = scene_with_captures(model, tmp_path / "world.json")
    np.testing.assert_array_equal(bare.means, as_manifest.means)
    np.testing.assert_array_equal(bare.body_ids, as_manifest.body_ids)
    recorded = json.loads(record_scene(tmp_path / "green.ply", tmp_path / "run").read_text())
    assert recorded["parts"][0]["body"] == "world" and len(recorded["parts"][0]["sha256"]) == 64
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", physics="mujoco", episode_length=20, scene=str(tmp_path / "green.ply"))
    vec = spec.make_vec(1)  # what actors and eval build
    assert (vec.gaussian_scene.body_ids == 0).sum() == 200
    vec.close()
    (tmp_path / "junk.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=r"junk\.bin is neither a scene manifest \(JSON\) nor a \.ply"):
        read_manifest(tmp_path / "junk.bin")
