"""Demonstrations: the file format and its loader, RLPD's half-and-half batches, the recorder's frames, interventions.

Synthetic episodes carry their identity in their observations (state = [episode, t, marker]) and rewards
(episode * 100 + t), so every sampled field can be checked against what was written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import jax
import numpy as np
import pytest

from serl_gs.data.frame_stack import gather_stacks
from serl_gs.data.records import RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.demos.dataset import Episode, check_against, describe, load_checked, read_episodes, write_demos
from serl_gs.demos.mixing import DemoBuffer, demo_count, intervened_rows, mixed_sample
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner_config import LearnerConfig

quiet = lambda message: None
STATE_SPEC = RecordSpec(obs=(("state", (3,), "float32"),), action_dim=2)
TASK = {"env": "serl_gs/Test-v0", "obs_mode": "state"}


def _episode(episode: int, length: int, marker: float = 1.0, terminated: bool = False) -> Episode:
    t = np.arange(length + 1, dtype=np.float32)
    state = np.stack([np.full_like(t, episode), t, np.full_like(t, marker)], axis=1)
    ended = np.zeros((length,), bool)
    ended[-1] = True
    return Episode(
        obs={"state": state},
        action=np.stack([np.full((length,), episode), np.arange(1, length + 1)], axis=1).astype(np.float32),
        reward=(episode * 100 + np.arange(1, length + 1)).astype(np.float32),
        terminated=ended & terminated,
        truncated=ended & (not terminated),
        success=True,
        source="test",
    )


def _spec(shape=(3,)):
    return {"state": jax.ShapeDtypeStruct(shape, np.float32)}


def _replay(episodes, actor: str, capacity: int = 256) -> ReplayBuffer:
    replay = ReplayBuffer(STATE_SPEC, ReplayConfig(capacity=capacity, storage="host"), log=quiet)
    for episode in episodes:
        replay.insert(actor, episode.records())
    return replay


def test_a_demo_file_reads_back_what_was_written_in_robomimics_layout(tmp_path):
    path = tmp_path / "demos.hdf5"
    episodes = [_episode(0, 3), _episode(1, 5, terminated=True)]
    write_demos(path, episodes, task=TASK)
    with h5py.File(path, "r") as f:  # what robomimic's readers look for
        assert f["data"].attrs["total"] == 8
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == TASK["env"]
        demo = f["data/demo_1"]
        assert demo.attrs["num_samples"] == 5
        np.testing.assert_array_equal(demo["obs/state"][...], episodes[1].obs["state"][:-1])
        np.testing.assert_array_equal(demo["next_obs/state"][...], episodes[1].obs["state"][1:])
        np.testing.assert_array_equal(demo["dones"][...], [0, 0, 0, 0, 1])
    back = list(read_episodes(path))
    for got, want in zip(back, episodes, strict=True):
        for key, value in want.records().items():
            np.testing.assert_array_equal(got.records()[key], value, err_msg=key)


def test_the_loader_refuses_a_file_of_another_task_in_one_line_naming_the_difference(tmp_path):
    pixels_task = {"env": "serl_gs/Test-v0", "obs_mode": "pixels", "image_size": 16, "cameras": []}
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    episode = _episode(0, 2)
    episode.obs["pixels/front"] = frames
    path = tmp_path / "px16.hdf5"
    write_demos(path, [episode], task=pixels_task)
    learner_spec = {**_spec(), "pixels/front": jax.ShapeDtypeStruct((16, 16, 3), np.uint8)}
    demo, episodes = load_checked(path, learner_spec, 2, pixels_task)  # the matching learner takes it
    assert demo.episodes == 1 and demo.obs["pixels/front"] == ((16, 16, 3), "uint8")
    np.testing.assert_array_equal(episodes[0].obs["pixels/front"], frames)

    refusals = [
        ({**pixels_task, "image_size": 32}, learner_spec, 2, r"image_size=16, the learner trains image_size=32"),
        ({**pixels_task, "env": "serl_gs/Other-v0"}, learner_spec, 2, r"recorded with env='serl_gs/Test-v0'"),
        (pixels_task, {**learner_spec, "pixels/front": jax.ShapeDtypeStruct((16, 16, 9), np.uint8)}, 2,
         r"observation 'pixels/front' is uint8\[16, 16, 3\], the learner expects uint8\[16, 16, 9\]"),
        (pixels_task, _spec(), 2, r"observes \['pixels/front', 'state'\], the learner observes \['state'\]"),
        (pixels_task, learner_spec, 4, r"has actions of 2 dims, the learner's env 4"),
    ]  # fmt: skip
    for task, spec, action_dim, message in refusals:
        with pytest.raises(ValueError, match=message) as e:
            check_against(describe(path), spec, action_dim, task)
        assert "\n" not in str(e.value) and str(path) in str(e.value)

    not_demos = tmp_path / "other.hdf5"
    with h5py.File(not_demos, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="is not a serl_gs demo file"):
        describe(not_demos)


def test_batches_are_exactly_the_demo_share_from_the_demos_with_n_step_targets_inside_each_episode():
    demos = _replay([_episode(e, length) for e, length in enumerate([2, 5, 1, 4])], "demo", capacity=64)
    online = _replay([_episode(10 + e, 6, marker=-1.0) for e in range(4)], "online")
    discount = 0.5
    for ratio, n_step in ((0.5, 1), (0.25, 3)):
        batch = mixed_sample(online, demos, jax.random.PRNGKey(n_step), 16, 3, ratio, n_step, discount)
        n_demo = demo_count(16, ratio)
        marker = np.asarray(batch.obs["state"])[..., 2]
        assert n_demo == int(16 * ratio)
        np.testing.assert_array_equal(marker[:, :n_demo], 1.0)  # every batch: demos first, exactly n_demo
        np.testing.assert_array_equal(marker[:, n_demo:], -1.0)
        np.testing.assert_array_equal(batch.demo, marker == 1.0)  # the rows marked demo are the demo rows
        obs, next_obs = np.asarray(batch.obs["state"]), np.asarray(batch.next_obs["state"])
        episode, t = obs[..., 0], obs[..., 1]
        np.testing.assert_array_equal(next_obs[..., 0], episode)  # never across an episode's end
        lengths = np.where(episode < 10, np.array([2, 5, 1, 4])[np.minimum(episode, 3).astype(int)], 6)
        links = np.minimum(n_step, lengths - t)
        np.testing.assert_array_equal(next_obs[..., 1], t + links)
        steps = range(1, n_step + 1)
        want = sum(np.where(i <= links, discount ** (i - 1) * (episode * 100 + t + i), 0.0) for i in steps)
        np.testing.assert_allclose(np.asarray(batch.reward), want, rtol=1e-6)
        if n_step > 1:
            np.testing.assert_allclose(np.asarray(batch.discount), discount**links)  # truncated: bootstraps
    with pytest.raises(ValueError, match="demo_ratio 0.01 of batch_size 16 leaves 0 demo transitions"):
        mixed_sample(online, demos, jax.random.PRNGKey(0), 16, 1, 0.01)


def _message(ids, env, intervened, first=()):
    """Records of one env whose state is [id, env, 0]."""
    n = len(ids)
    records = {
        "env_index": np.full((n,), env, np.int32),
        "obs/state": np.stack([np.asarray(ids, np.float32), np.full((n,), env, np.float32), np.zeros(n)], 1),
        "action": np.stack([np.asarray(ids, np.float32), np.zeros(n)], 1).astype(np.float32),
        "reward": np.asarray(ids, np.float32),
        "terminated": np.zeros((n,), bool),
        "truncated": np.zeros((n,), bool),
        "is_first": np.isin(ids, first),
    }
    records["obs/state"] = records["obs/state"].astype(np.float32)
    return records, np.asarray(intervened, bool)


def test_intervened_runs_enter_the_demo_buffer_after_the_frame_they_started_from_and_nothing_else():
    tails: dict = {}
    records, intervened = _message([1, 2, 3, 4, 5, 6], 0, [0, 0, 1, 1, 0, 1], first=[1])
    rows = intervened_rows(records, intervened, "a:0", tails)
    np.testing.assert_array_equal(rows["obs/state"][:, 0], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(rows["is_first"], [True, False, False, True, False])
    records2, intervened2 = _message([7, 8, 9], 0, [1, 0, 1])  # the run 6-7 goes on across messages
    rows2 = intervened_rows(records2, intervened2, "a:0", tails)
    np.testing.assert_array_equal(rows2["obs/state"][:, 0], [7, 8, 9])
    np.testing.assert_array_equal(rows2["is_first"], [False, True, False])

    buffer = DemoBuffer(ReplayBuffer(STATE_SPEC, ReplayConfig(capacity=64, storage="host"), log=quiet))
    buffer.add_intervened("a:0", *_message([1, 2, 3, 4, 5, 6], 0, [0, 0, 1, 1, 0, 1], first=[1]))
    buffer.add_intervened("a:0", *_message([7, 8, 9], 0, [1, 0, 1]))
    assert buffer.intervened_records == buffer.num_transitions == 5  # records 3, 4, 6, 7, 9
    batch = buffer.replay.sample(jax.random.PRNGKey(0), 64)
    obs, action = np.asarray(batch.obs["state"])[0, :, 0], np.asarray(batch.action)[0, :, 0]
    pairs = set(zip(obs.tolist(), action.tolist(), strict=True))
    assert pairs == {(2.0, 3.0), (3.0, 4.0), (5.0, 6.0), (6.0, 7.0), (8.0, 9.0)}  # (obs, intervened action)
    assert intervened_rows(*_message([10, 11], 0, [0, 0]), "a:0", tails) is None


def test_demo_actions_are_clipped_into_the_action_limit_in_files_and_interventions_and_nowhere_else(tmp_path):
    path = tmp_path / "demos.hdf5"
    episode = _episode(0, 3)
    episode.action[:] = [[1.0, -1.0], [0.5, -0.2], [-1.0, 0.95]]  # an expert at the bounds, and inside them
    write_demos(path, [episode], task=TASK)
    limit = 0.9
    buffer = DemoBuffer.from_files([str(path)], STATE_SPEC, ReplayConfig(capacity=2, storage="host"), 8, _spec(),
                                   2, TASK, action_limit=limit)  # fmt: skip
    buffer.add_intervened("a:0", *_message([1, 2, 3], 0, [0, 1, 1], first=[1]))  # intervened actions 2, 3 -> 0.9
    # The stored records in insertion order: the file's episode (its first record's action is unused), then the
    # intervened run after the record it started from.
    stored = np.asarray(buffer.replay._storage.fields["action"])[: buffer.replay.size]
    want = [[0, 0], [0.9, -0.9], [0.5, -0.2], [-0.9, 0.9], [0.9, 0], [0.9, 0], [0.9, 0]]
    np.testing.assert_allclose(stored, want, rtol=1e-6)
    assert next(read_episodes(path)).action[0, 0] == 1.0  # the file keeps what was recorded
    unclipped = DemoBuffer.from_files([str(path)], STATE_SPEC, ReplayConfig(capacity=2, storage="host"), 0,
                                      _spec(), 2, TASK)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(unclipped.replay._storage.fields["action"])[1:4], episode.action)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"demo action limit must be in \\(0, 1\\], got {bad}"):
            DemoBuffer.from_files([str(path)], STATE_SPEC, ReplayConfig(capacity=2), 0, _spec(), 2, TASK,
                                  action_limit=bad)  # fmt: skip
        with pytest.raises(ValueError, match=f"demo_action_limit must be in .0, 1. .1 = as recorded., got {bad}"):
            LearnerConfig(demo_action_limit=bad)


def test_an_episode_an_intervention_acted_in_is_counted_apart_not_as_the_policys_progress():
    from serl_gs.nodes.actor import EpisodeTracker

    tracker = EpisodeTracker(3)
    no, yes = np.zeros(3, bool), np.array([False, True, False])
    tracker.step(np.ones(3), no, None, yes)  # env 1 taken over for one step, then the policy again
    extras = tracker.step(np.ones(3), np.ones(3, bool), np.array([1.0, 1.0, 0.0]), no)
    np.testing.assert_array_equal(extras["episode_return"], [2, np.nan, 2])  # the assisted episode: no return,
    np.testing.assert_array_equal(extras["success"], [1, np.nan, 0])  # no success
    assert sorted(extras) == ["episode_return", "success"]  # (no eval envs: no eval extras on the wire)
    assert tracker.drain() == {"episode_return": 2.0, "episodes": 2.0, "success": 0.5}
    assert tracker.assisted_episodes == 1
    extras = tracker.step(np.ones(3), np.ones(3, bool), None, no)  # the next episodes are the policy's
    assert np.isfinite(extras["episode_return"]).all()


def test_eval_envs_episodes_are_reported_apart_from_the_exploring_ones():
    from serl_gs.nodes.actor import ActorConfig, EpisodeTracker

    tracker = EpisodeTracker(4, eval_envs=1)  # env 3 acts with the policy's mean
    extras = tracker.step(np.array([1.0, 2.0, 3.0, 5.0]), np.ones(4, bool), np.array([0.0, 1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(extras["episode_return"], [1, 2, 3, np.nan])
    np.testing.assert_array_equal(extras["eval_return"], [np.nan, np.nan, np.nan, 5])
    np.testing.assert_array_equal(extras["eval_success"], [np.nan, np.nan, np.nan, 1])
    assert tracker.drain() == {"episode_return": 2.0, "success": 2 / 3, "eval_return": 5.0, "eval_success": 1.0,
                               "episodes": 3.0, "eval_episodes": 1.0}  # fmt: skip
    with pytest.raises(ValueError, match=r"eval_envs must be in \[0, num_envs 4\) .some env must explore., got 4"):
        ActorConfig(num_envs=4, eval_envs=4)


def test_the_eval_node_takes_no_intervention():
    """Evaluation measures the policy alone: its entry point has no way to be given an intervention source."""
    out = subprocess.run([sys.executable, "-m", "actors.evaluate", "--checkpoint", "runs/x", "--intervention=scripted"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: Unrecognized options: --intervention=scripted" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow  # renders ~10 frames of 16x16 with the CPU reference renderer
def test_a_keyboard_recording_shows_the_live_cameras_and_the_replay_rebuilds_the_stacks_the_policy_saw(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a virtual display; the events below are synthetic keys
    import pygame

    from serl_gs.demos.recorder import RecordConfig, record
    from serl_gs.demos.sources import KeyboardSource

    env = EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=16, episode_length=4,
                  physics="mujoco", frame_stack=3, render_backend="reference")  # fmt: skip
    source = KeyboardSource(action_dim=1, scale=2)
    seen, shown = [], []
    keys = {1: (pygame.KEYDOWN, pygame.K_RIGHT), 3: (pygame.KEYUP, pygame.K_RIGHT), 5: (pygame.KEYDOWN, pygame.K_LEFT)}

    def on_step(policy_obs):  # the policy's observation before step len(seen), as the window just showed it
        seen.append({name: np.asarray(value)[0].copy() for name, value in policy_obs.items()})
        shown.append(pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2))
        if len(seen) - 1 in keys:
            kind, key = keys[len(seen) - 1]
            pygame.event.post(pygame.event.Event(kind, key=key))

    config = RecordConfig(env=env, out=str(tmp_path / "kb.hdf5"), successes=2, keep_failures=True)
    result = record(config, source, on_step=on_step, log=quiet)
    assert result.kept == 2 and result.path is not None
    camera = "pixels/fixed"
    for frames, policy_obs in zip(shown, seen, strict=True):  # the window: the newest frame, 2x
        np.testing.assert_array_equal(frames, policy_obs[camera][..., -3:].repeat(2, 0).repeat(2, 1))

    obs_spec, action_dim = env.observation_spec()
    buffer = DemoBuffer.from_files([str(result.path)], RecordSpec(
        obs=tuple((n, tuple(s.shape), np.dtype(s.dtype).name) for n, s in sorted(obs_spec.items())),
        action_dim=action_dim), ReplayConfig(capacity=2, storage="host", frame_stack=3), 0, obs_spec, action_dim,
        env.task())  # fmt: skip
    episodes = list(read_episodes(result.path))
    actions = np.concatenate([e.action[:, 0] for e in episodes])
    expected = np.array([0, 1, 1, 0, 0] + [-1] * (len(actions) - 5), np.float32)
    np.testing.assert_array_equal(actions, expected)  # held keys -> actions, step by step

    fields = buffer.replay._storage.fields
    frames, prev_gap = np.asarray(fields["obs"][camera]), np.asarray(fields["prev_gap"])
    slot = step = 0
    for episode in episodes:
        for t in range(episode.length):  # the stack at each obs slot is the one the policy saw at that step
            stack = gather_stacks(frames, prev_gap, np.array([slot + t]), 3, np)[0]
            np.testing.assert_array_equal(stack, seen[step + t][camera], err_msg=f"step {step + t}")
        slot, step = slot + episode.length + 1, step + episode.length


@pytest.mark.slow  # a learner and an actor in one process, then a restart
def test_rlpd_learner_mixes_demos_takes_interventions_into_both_buffers_and_keeps_demos_across_a_restart(tmp_path):
    from serl_gs.demos.recorder import RecordConfig, record
    from serl_gs.demos.sources import ScriptedSource, TaperedSchedule
    from serl_gs.nodes.actor import ActorConfig
    from serl_gs.nodes.learner import Learner
    from tests.node_threads import actor_transport, learner_and_actor, wait_for
    from tests.test_nodes_learner import ENV, _learner_config

    push_right = lambda vec, obs: np.ones((vec.num_envs, 1), np.float32)  # a cartpole "expert": always +1
    demo_file = tmp_path / "cartpole.hdf5"
    record(RecordConfig(env=ENV, out=str(demo_file), successes=3, num_envs=3, keep_failures=True),
           ScriptedSource(push_right, 3), log=quiet)  # fmt: skip
    import dataclasses

    config = dataclasses.replace(_learner_config(tmp_path / "run"), demo_paths=(str(demo_file),), demo_ratio=0.5)
    learner = Learner(config)
    assert learner.demos.num_transitions == 3 * 20
    transport = actor_transport(learner)
    actor_config = ActorConfig(env=ENV, transport=transport, num_envs=2, random_steps=20, log_every_s=0.5)
    intervention = ScriptedSource(push_right, 2, TaperedSchedule(start=0.5, taper_steps=10**6, seed=1))
    with learner_and_actor(learner, actor_config, intervention) as nodes:
        threads = nodes.threads
        episodes = learner._episodes
        wait_for(lambda: learner.counters["updates"] >= 10 and episodes.ended > episodes.reported["episode_return"],
                 120, "10 updates and a finished intervened episode", threads)  # fmt: skip
        nodes.stop_actor.set()
        final = nodes.actor_thread.outcome(60)
        wait_for(lambda: learner.counters["records/a0"] == final["records_sent"], 30, "every record", threads)
        nodes.stop_learner.set()
        metrics = nodes.learner_thread.outcome(60)
    intervened = learner.counters["intervened"]
    assert 0 < intervened < learner.counters["transitions"]  # some episodes the expert's, some the policy's
    assert learner.replay.total_inserted == learner.counters["records"]  # every record online ...
    assert learner.demos.intervened_records == intervened  # ... and the intervened ones in the demo buffer too
    assert learner.demos.num_transitions == 3 * 20 + intervened
    assert metrics["demo_ratio"] == 0.5 and metrics["demo_transitions"] > 0 and "intervention_rate" in metrics
    # The progress windows hold the policy's own episodes only: the expert's ended but were not reported.
    assert len(learner.return_window) == min(episodes.reported["episode_return"], learner.return_window.maxlen)
    assert episodes.reported["episode_return"] + final["assisted_episodes"] == episodes.ended

    resumed = Learner(config)  # demos (the file's and the intervened) come back with the replay
    try:
        assert resumed.demos.num_transitions == learner.demos.num_transitions
        assert resumed.counters["intervened"] == intervened
        saved, restored = learner.demos.replay._storage.fields, resumed.demos.replay._storage.fields
        np.testing.assert_array_equal(np.asarray(restored["obs"]["state"]), np.asarray(saved["obs"]["state"]))
    finally:
        resumed.close()


def test_the_record_command_describes_a_file_and_refuses_an_env_without_an_expert_in_one_line(tmp_path):
    path = tmp_path / "d.hdf5"
    write_demos(path, [_episode(0, 3), _episode(1, 2)], task=TASK)
    info = subprocess.run([sys.executable, "-m", "serl_gs.demos", "info", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert info.returncode == 0 and "2 episodes, 5 transitions" in info.stdout, info.stderr
    # --preset: a preset's env is the recorder's (cpu_pixels: pixel cartpole, which has no expert).
    out = subprocess.run([sys.executable, "-m", "serl_gs.demos", "record", "--preset", "cpu_pixels",
                          "--source", "scripted", "--out", str(tmp_path / "x.hdf5")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: no scripted expert for env 'serl_gs/CartpoleBalance-v0'; envs with one: "
        "['serl_gs/PandaPegInsertion-v0', 'serl_gs/PandaPickCube-v0', 'serl_gs/PandaPlaceCube-v0', "
        "'serl_gs/PandaStackCube-v0', 'serl_gs/PiperMobilePick-v0']"
    )
    # The env flags are the nodes' (one EnvSpec): cameras as separate words, a bad value named in one line.
    bad = subprocess.run([sys.executable, "-m", "serl_gs.demos", "record", "--cameras", "front", "wrist",
                          "--image_size", "big", "--out", str(tmp_path / "x.hdf5")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr[-2000:]
    assert bad.stderr.startswith("error: ") and "big" in bad.stderr
