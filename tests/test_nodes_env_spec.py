"""What the nodes agree on (serl_gs.nodes.env_spec): the env spec and the shapes it implies."""

from __future__ import annotations

import pytest

from serl_gs.nodes.env_spec import EnvSpec, obs_spec_of


@pytest.mark.parametrize(
    "spec",
    [
        EnvSpec("serl_gs/PandaPickCube-v0", physics="mujoco"),
        EnvSpec("serl_gs/PandaPickCube-v0", obs_mode="pixels", image_size=8, render_backend="reference",
                physics="mujoco"),
        EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=8, cameras=("fixed",),
                render_backend="reference", physics="mujoco"),
    ],
    ids=["panda-state", "panda-pixels", "cartpole-pixels"],
)  # fmt: skip
def test_observation_spec_from_the_task_matches_the_vector_env(spec):
    vec = spec.make_vec(1, seed=0)
    try:
        want = obs_spec_of(vec), vec.single_action_space.shape[0]
    finally:
        vec.close()
    assert spec.observation_spec() == want


def test_env_spec_names_a_bad_value():
    with pytest.raises(ValueError, match="obs_mode must be one of .* got 'rgb'"):
        EnvSpec(obs_mode="rgb")
    with pytest.raises(ValueError, match="physics must be one of .* got 'warp'"):
        EnvSpec(physics="warp")
    with pytest.raises(ValueError, match="render_backend must be one of .* got 'opengl'"):
        EnvSpec(render_backend="opengl")
    with pytest.raises(ValueError, match="cameras must be a tuple"):
        EnvSpec(cameras="front")
    with pytest.raises(ValueError, match="unknown camera 'nope'"):
        EnvSpec(obs_mode="pixels", cameras=("nope",)).observation_spec()


def test_render_size_reaches_the_vector_env_and_must_be_a_multiple_of_the_image_size():
    spec = EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=16, render_size=64)
    assert spec.make_kwargs()["pixels_render_size"] == 64
    assert "render_size" not in spec.task()  # the actor's own choice: observations are image_size either way
    assert "pixels_render_size" not in EnvSpec(obs_mode="pixels").make_kwargs()
    with pytest.raises(ValueError, match="render_size must be a positive multiple of image_size 16, got 40"):
        EnvSpec(obs_mode="pixels", image_size=16, render_size=40)
