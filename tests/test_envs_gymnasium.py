"""The envs the way gymnasium users already use them: `max_episode_steps`, `render_mode="rgb_array"` and
RecordVideo on single and vector envs, AsyncVectorEnv (spawn works, fork refuses at once), vector wrappers."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

import envs  # noqa: F401  (registers the serl_gs/* ids)

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = "serl_gs/CartpoleBalance-v0"
PANDA = "serl_gs/PandaPickCube-v0"
FAST = dict(physics="mujoco", render_backend="reference")


def test_max_episode_steps_is_the_episode_length():
    vec = gym.make_vec(CARTPOLE, num_envs=2, physics="mujoco", max_episode_steps=3)
    assert vec.task.episode_length == 3
    vec.reset(seed=0)
    truncated = [bool(np.asarray(vec.step(np.zeros((2, 1), np.float32))[3]).all()) for _ in range(3)]
    assert truncated == [False, False, True]
    vec.close()
    env = gym.make(CARTPOLE, physics="mujoco", episode_length=3, max_episode_steps=2)  # gymnasium's TimeLimit
    env.reset(seed=0)
    assert [env.step(np.zeros(1, np.float32))[3] for _ in range(2)] == [False, True]
    env.close()
    with pytest.raises(ValueError, match="max_episode_steps=3 and episode_length=5 disagree"):
        gym.make_vec(CARTPOLE, num_envs=1, max_episode_steps=3, episode_length=5)
    with pytest.raises(ValueError, match="episode_length must be positive, got 0"):
        gym.make_vec(CARTPOLE, num_envs=1, max_episode_steps=0)


def test_render_modes_are_declared_and_bad_render_options_raise():
    env = gym.make(CARTPOLE, render_mode="rgb_array", **FAST)
    assert env.metadata["render_modes"] == ["rgb_array"] and env.render_mode == "rgb_array"
    assert env.metadata["render_fps"] == pytest.approx(100.0)  # cartpole steps 10 ms
    env.close()
    collected = gym.make(CARTPOLE, render_mode="rgb_array_list", render_size=16, episode_length=3, **FAST)
    collected.reset(seed=0)
    collected.step(np.zeros(1, np.float32))
    assert [f.shape for f in collected.render()] == [(16, 16, 3)] * 2  # gymnasium's RenderCollection over ours
    collected.close()
    vec = gym.make_vec(PANDA, num_envs=1, physics="mujoco")
    assert vec.metadata["render_modes"] == ["rgb_array"] and vec.render_mode is None
    assert vec.metadata["render_fps"] == pytest.approx(50.0)  # 5 substeps of 4 ms
    vec.close()
    with pytest.raises(ValueError, match="render_mode must be None or one of \\('rgb_array',\\), got 'human'"):
        gym.make_vec(CARTPOLE, num_envs=1, render_mode="human")
    with pytest.raises(ValueError, match="unknown camera 'side'; the model's cameras are \\['fixed'\\]"):
        gym.make_vec(CARTPOLE, num_envs=1, render_mode="rgb_array", render_camera="side")


@pytest.mark.slow
def test_single_env_renders_the_state_it_returned_including_the_final_one():
    short = gym.make(CARTPOLE, render_mode="rgb_array", render_size=24, episode_length=6, **FAST)
    long = gym.make(CARTPOLE, render_mode="rgb_array", render_size=24, episode_length=50, **FAST)
    short.reset(seed=4)
    long.reset(seed=4)
    first = short.render()
    assert first.dtype == np.uint8 and first.shape == (24, 24, 3)
    np.testing.assert_array_equal(first, long.render())
    push = np.ones(1, np.float32)
    for _ in range(6):
        *_, truncated, _ = short.step(push)
        long.step(push)
    assert truncated
    final = short.render()  # the last state of the episode, not the next episode's start
    np.testing.assert_array_equal(final, long.render())
    next_start = short.unwrapped.vec_env.render()[0]  # the batch inside has already reset
    assert np.abs(final.astype(int) - next_start).mean() > 0.2, "the cart moved"
    short.close()
    long.close()


def test_pixel_env_renders_from_its_observations():
    env = gym.make(CARTPOLE, render_mode="rgb_array", obs_mode="pixels", image_size=16, **FAST)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs["pixels/fixed"])  # render_size defaults to image_size
    env.close()


@pytest.mark.slow
def test_record_video_writes_whole_episodes(tmp_path):
    env = gym.make(CARTPOLE, render_mode="rgb_array", render_size=32, episode_length=2, **FAST)
    env = gym.wrappers.RecordVideo(env, str(tmp_path), episode_trigger=lambda _: True, disable_logger=True)
    for episode in range(2):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    videos = sorted(tmp_path.glob("*.mp4"))
    assert [v.name for v in videos] == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]
    frames = iio.imread(videos[0])
    assert frames.shape == (3, 32, 32, 3), "the reset frame and one per step"
    assert frames.std() > 5


@pytest.mark.slow
def test_vector_env_renders_one_frame_per_env_and_records_video(tmp_path):
    opts = dict(render_mode="rgb_array", render_camera="fixed", render_size=24, episode_length=3, **FAST)
    vec = gym.make_vec(CARTPOLE, num_envs=2, **opts)
    vec.reset(seed=0)
    vec.step(np.array([[1.0], [-1.0]], np.float32))
    frames = vec.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    assert all(f.shape == (24, 24, 3) and f.dtype == np.uint8 and isinstance(f, np.ndarray) for f in frames)
    assert not np.array_equal(frames[0], frames[1]), "the carts were pushed apart"
    recorder = gym.wrappers.vector.RecordVideo(vec, str(tmp_path), step_trigger=lambda s: s == 0, video_length=2)
    recorder.reset(seed=0)
    for _ in range(3):
        recorder.step(recorder.action_space.sample())
    recorder.close()
    videos = list(tmp_path.glob("*.mp4"))
    assert len(videos) == 1 and iio.imread(videos[0]).shape[1:] == (24, 2 * 24, 3), "two envs side by side"


def test_env_specs_pickle_without_code_and_name_importable_entry_points():
    spec = gym.spec(PANDA)
    assert spec.entry_point == "serl_gs.tasks:single_entry_point"
    assert spec.vector_entry_point == "serl_gs.tasks:vector_entry_point"
    assert spec.kwargs == {"task": PANDA, "task_module": "envs"}
    assert pickle.loads(pickle.dumps(spec)) == spec  # plain pickle: a spawned worker needs nothing else


FRESH_CHILD = """
import sys
import gymnasium as gym

def make_in_fresh_process(spec, **kwargs):
    \"\"\"An env_fn for AsyncVectorEnv: records whether `envs` was imported before gym.make loaded it.\"\"\"
    before = "envs" in sys.modules
    env = gym.make(spec, **kwargs)
    env.unwrapped.envs_imported_before_make = before
    return env
"""


@pytest.mark.slow
def test_async_vector_env_with_spawn_needs_only_the_spec(tmp_path, monkeypatch):
    """Worker 0 builds from the pickled spec, worker 1 from gymnasium's "module:id" form; neither imports
    `envs` itself. Spawned workers start Python afresh (~5 s each on a 2-core machine)."""
    import functools

    (tmp_path / "fresh_child.py").write_text(FRESH_CHILD)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fresh_child

    kwargs = dict(physics="mujoco", max_episode_steps=2)
    env_fns = [
        functools.partial(fresh_child.make_in_fresh_process, gym.spec(CARTPOLE), **kwargs),
        functools.partial(fresh_child.make_in_fresh_process, "envs:" + CARTPOLE, **kwargs),
    ]
    vec = gym.vector.AsyncVectorEnv(env_fns, context="spawn", autoreset_mode="SameStep")
    try:
        obs, _ = vec.reset(seed=0)
        assert obs["state"].shape == (2, 5)
        assert vec.get_attr("envs_imported_before_make") == (False, False)
        vec.step(np.zeros((2, 1), np.float32))
        *_, truncated, infos = vec.step(np.zeros((2, 1), np.float32))
        assert truncated.all() and infos["final_obs"][0]["state"].shape == (5,)
    finally:
        vec.close()


FORK_PARENT = """
import gymnasium as gym, jax.numpy as jnp, envs
jnp.zeros(1).block_until_ready()  # JAX's backend runs in the parent, as in any JAX program
vec = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=2, vectorization_mode="async")  # fork: the default
try:
    vec.reset(seed=0)
except RuntimeError as err:
    print("REFUSED:", err)
    raise SystemExit(3)
"""


@pytest.mark.slow
def test_async_vector_env_with_fork_refuses_at_once_and_says_to_use_spawn():
    """Without the refusal this hangs forever (JAX deadlocks in the forked workers): a timeout here fails."""
    script = textwrap.dedent(FORK_PARENT)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "REFUSED: this process was forked from one where JAX was running" in done.stdout
    assert "context': 'spawn'" in done.stdout


def _cartpole(backend: str, num_envs: int = 2):
    return gym.make_vec(CARTPOLE, num_envs=num_envs, physics="mujoco", episode_length=3, array_backend=backend)


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_episode_statistics_work_on_both_array_backends(backend):
    env = gym.wrappers.vector.RecordEpisodeStatistics(_cartpole(backend))
    env.reset(seed=0)
    total = np.zeros(2)
    for _ in range(3):
        _, reward, _, truncated, infos = env.step(np.zeros((2, 1), np.float32))
        assert isinstance(reward, np.ndarray) and reward.flags.writeable  # host scalars on both backends
        total += reward
    assert truncated.all()
    np.testing.assert_allclose(infos["episode"]["r"], total, rtol=1e-6)
    np.testing.assert_array_equal(infos["episode"]["l"], [3, 3])
    env.close()


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_action_clip_and_rescale_and_reward_clip_work_on_both_array_backends(backend):
    plain, clipped, rescaled = _cartpole(backend), _cartpole(backend), _cartpole(backend)
    clipped = gym.wrappers.vector.ClipReward(gym.wrappers.vector.ClipAction(clipped), 0.0, 0.5)
    rescaled = gym.wrappers.vector.RescaleAction(rescaled, -2.0, 2.0)
    for env in (plain, clipped, rescaled):
        env.reset(seed=3)
    push = np.array([[1.0], [-0.5]], np.float32)
    obs_plain, reward_plain, *_ = plain.step(push)
    obs_clipped, reward_clipped, *_ = clipped.step(np.array([[5.0], [-0.5]], np.float32))  # 5 -> 1
    obs_rescaled, *_ = rescaled.step(2.0 * push)  # [-2, 2] -> [-1, 1]
    for obs in (obs_clipped, obs_rescaled):
        np.testing.assert_allclose(np.asarray(obs["state"]), np.asarray(obs_plain["state"]), atol=1e-6)
    np.testing.assert_allclose(reward_clipped, np.minimum(reward_plain, 0.5))


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_vector_observation_wrappers_refuse_same_step_autoreset_and_the_per_env_route_works(backend):
    with pytest.raises(ValueError, match="autoreset_mode"):  # gymnasium's vector observation wrappers
        gym.wrappers.vector.FlattenObservation(_cartpole(backend))
    # The documented route: wrap each env, gymnasium vectorizes them (next-step autoreset).
    vec = gym.make_vec(
        CARTPOLE, num_envs=2, vectorization_mode="sync", wrappers=[gym.wrappers.FlattenObservation],
        physics="mujoco", episode_length=3,
    )  # fmt: skip
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 5) and isinstance(obs, np.ndarray)
    vec.close()


def test_dict_info_to_list_needs_the_numpy_backend():
    infos = gym.wrappers.vector.DictInfoToList(_cartpole("numpy"))
    infos.reset(seed=0)
    *_, info_list = infos.step(np.zeros((2, 1), np.float32))
    assert len(info_list) == 2 and "success" not in info_list[0] and "upright" in info_list[0]
    with pytest.raises(AssertionError):  # it asserts numpy arrays in infos; JAX infos stay on the device
        jax_infos = gym.wrappers.vector.DictInfoToList(_cartpole("jax"))
        jax_infos.reset(seed=0)
        jax_infos.step(np.zeros((2, 1), np.float32))
