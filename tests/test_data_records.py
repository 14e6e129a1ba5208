"""Records from vector-env steps: final obs at episode ends, first obs of the next episode after them."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from serl_gs.data.records import (
    RecordSpec,
    reset_records,
    split_extras,
    step_records,
    validate_records,
    with_extras,
)
from serl_gs.data.replay import ReplayBuffer, ReplayConfig


def obs_of(values, n=3):  # state rows [v, v], pixels filled with v
    values = np.asarray(values, np.float32)
    return {
        "state": np.stack([values, values], -1),
        "pixels/cam": np.broadcast_to(values.astype(np.uint8)[:, None, None, None], (n, 2, 2, 3)).copy(),
    }


def test_reset_records_start_every_stream():
    records = reset_records(obs_of([1, 2, 3]), action_dim=2)
    assert validate_records(records) == 3
    assert records["is_first"].all() and records["action"].shape == (3, 2)
    np.testing.assert_array_equal(records["env_index"], [0, 1, 2])


def test_step_records_put_final_obs_then_first_obs_of_reset_envs():
    obs = obs_of([10, 20, 30])  # env 1 ended: 20 is already its new episode's first obs
    infos = {"final_obs": obs_of([0, 99, 0]), "_final_obs": np.array([False, True, False])}
    action = np.array([[0.1], [0.2], [0.3]], np.float32)
    records = step_records(
        obs, action, np.array([1.0, 2.0, 3.0]), np.array([False, True, False]), np.zeros(3, bool), infos
    )
    np.testing.assert_array_equal(records["env_index"], [0, 1, 2, 1])
    np.testing.assert_array_equal(records["obs/state"][:, 0], [10, 99, 30, 20])
    np.testing.assert_array_equal(records["obs/pixels/cam"][:, 0, 0, 0], [10, 99, 30, 20])
    np.testing.assert_array_equal(records["is_first"], [False, False, False, True])
    np.testing.assert_array_equal(records["terminated"], [False, True, False, False])
    np.testing.assert_array_equal(records["reward"], [1, 2, 3, 0])
    np.testing.assert_array_equal(records["action"][:, 0], np.float32([0.1, 0.2, 0.3, 0.0]))


def test_step_records_accept_jax_arrays():
    obs = jax.tree.map(jax.numpy.asarray, obs_of([1, 2, 3]))
    records = step_records(
        obs,
        jax.numpy.zeros((3, 1)),
        jax.numpy.zeros(3),
        jax.numpy.zeros(3, bool),
        jax.numpy.zeros(3, bool),
        {},
    )
    assert records["obs/state"].dtype == np.float32 and isinstance(records["obs/state"], np.ndarray)


def test_step_records_reject_missing_or_inconsistent_final_obs():
    ended = np.array([False, True, False])
    args = (obs_of([1, 2, 3]), np.zeros((3, 1)), np.zeros(3), ended, np.zeros(3, bool))
    with pytest.raises(ValueError, match="final_obs"):
        step_records(*args, {})
    with pytest.raises(ValueError, match="disagrees"):
        step_records(*args, {"final_obs": obs_of([0, 0, 0]), "_final_obs": np.array([True, False, False])})


def test_validate_records_names_the_bad_field():
    records = reset_records(obs_of([1, 2, 3]), action_dim=1)
    with pytest.raises(ValueError, match="is_first"):
        validate_records({k: v for k, v in records.items() if k != "is_first"})
    with pytest.raises(ValueError, match="leading dim"):
        validate_records(dict(records, reward=np.zeros(2, np.float32)))
    with pytest.raises(ValueError, match="pixels"):
        validate_records(dict(records, **{"obs/pixels/cam": np.zeros((3, 2, 2, 3), np.float32)}))
    with pytest.raises(ValueError, match="unknown"):
        validate_records(dict(records, rewrd=np.zeros(3, np.float32)))


def test_extras_ride_along_padded_for_new_episodes_and_split_off_again():
    obs = obs_of([10, 20, 30])  # env 1 ended: one extra is_first row for it
    infos = {"final_obs": obs_of([0, 99, 0]), "_final_obs": np.array([False, True, False])}
    ended = np.array([False, True, False])
    records = step_records(obs, np.zeros((3, 1)), np.zeros(3), ended, np.zeros(3, bool), infos)
    returns = np.float32([1.5, 2.5, 3.5])
    records = with_extras(records, 3, {"episode_return": returns, "success": None})
    assert validate_records(records) == 4 and "extras/success" not in records
    np.testing.assert_array_equal(records["extras/episode_return"], np.float32([1.5, 2.5, 3.5, 0.0]))
    fields, extras = split_extras(records)
    assert set(extras) == {"episode_return"} and not any(k.startswith("extras/") for k in fields)
    with pytest.raises(ValueError, match="leading dim of 3 envs"):
        with_extras(records, 3, {"x": np.zeros(2)})
    with pytest.raises(ValueError, match="extras must be numeric"):
        validate_records(dict(fields, **{"extras/note": np.array(["a", "b", "c", "d"])}))


def test_records_of_a_same_step_autoreset_run_pair_into_true_transitions():
    """A scripted 2-env run with an episode end: the replay rebuilds exactly the env's transitions."""
    replay = ReplayBuffer(
        RecordSpec.from_records(reset_records(obs_of([0, 0, 0]), 1)),
        ReplayConfig(capacity=32),
        log=lambda m: None,
    )
    replay.insert("a", reset_records(obs_of([1, 2, 3]), 1))
    replay.insert(
        "a",
        step_records(obs_of([11, 12, 13]), np.ones((3, 1)), np.ones(3), np.zeros(3, bool), np.zeros(3, bool), {}),
    )
    # env 2 truncates: its final obs is 23, its new episode starts at 50.
    replay.insert(
        "a",
        step_records(
            obs_of([21, 22, 50]),
            np.ones((3, 1)),
            np.full(3, 2.0),
            np.zeros(3, bool),
            np.array([False, False, True]),
            {"final_obs": obs_of([0, 0, 23]), "_final_obs": np.array([False, False, True])},
        ),
    )
    replay.insert(
        "a",
        step_records(obs_of([31, 32, 51]), np.ones((3, 1)), np.full(3, 3.0), np.zeros(3, bool), np.zeros(3, bool), {}),
    )
    assert replay.num_transitions == 9
    batch = jax.device_get(replay.sample(jax.random.PRNGKey(0), 256))
    pairs = set(zip(batch.obs["state"][0, :, 0].tolist(), batch.next_obs["state"][0, :, 0].tolist(), strict=True))
    assert pairs == {(1, 11), (2, 12), (3, 13), (11, 21), (12, 22), (13, 23), (21, 31), (22, 32), (50, 51)}
    assert not batch.terminated.any()  # truncation is not termination


def test_records_from_the_real_vector_env_pair_into_its_exact_transitions():
    """CartpoleBalance with 3-step episodes: every stored pair is (obs, true next obs) as the env gave them."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the serl_gs/ ids)

    num_envs, steps = 4, 12
    vec = gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=num_envs, array_backend="numpy", episode_length=3)
    obs, _ = vec.reset(seed=0)
    first = reset_records(obs, action_dim=1)
    replay = ReplayBuffer(RecordSpec.from_records(first), ReplayConfig(capacity=256), log=lambda m: None)
    replay.insert("a", first)
    expected, ended = set(), 0
    rng = np.random.default_rng(0)
    for _ in range(steps):
        action = rng.uniform(-1, 1, (num_envs, 1)).astype(np.float32)
        next_obs, reward, terminated, truncated, infos = vec.step(action)
        for i in range(num_envs):
            done = bool(terminated[i] or truncated[i])
            true_next = infos["final_obs"]["state"][i] if done else next_obs["state"][i]
            expected.add(
                (tuple(obs["state"][i].tolist()), tuple(true_next.tolist()), float(reward[i]), bool(terminated[i]))
            )
            ended += done
        replay.insert("a", step_records(next_obs, action, reward, terminated, truncated, infos))
        obs = next_obs
    vec.close()
    assert ended == num_envs * (steps // 3)  # episode ends were crossed, with autoreset
    assert replay.num_transitions == num_envs * steps
    b = jax.device_get(replay.sample(jax.random.PRNGKey(0), 1024))
    sampled = {
        (tuple(o.tolist()), tuple(n.tolist()), float(r), bool(t))
        for o, n, r, t in zip(b.obs["state"][0], b.next_obs["state"][0], b.reward[0], b.terminated[0], strict=True)
    }
    assert sampled == expected
