"""n-step sampling: every sampled transition's reward sum, bootstrap factor and next obs match a reference
computed from the streams as inserted, at episode ends (terminated and truncated), at a stream's newest record
and across a ring wrap-around, for frames on the device and in host memory."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from serl_gs.data.records import RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig

SPEC = RecordSpec(obs=(("state", (1,), "float32"),), action_dim=1)
DISCOUNT = 0.5
quiet = lambda message: None


def make_streams(rng: np.random.Generator, num_envs: int, steps: int) -> list[list[dict]]:
    """Per env, its records in order: ids unique over all envs; episodes of 1-5 steps ending at random
    by termination or truncation."""
    next_id = 1
    streams = []
    for _ in range(num_envs):
        stream, left = [], 0
        for _ in range(steps):
            first = left == 0
            if first:
                left = int(rng.integers(1, 6))
                done = terminated = False
            else:
                left -= 1
                done = left == 0
                terminated = done and bool(rng.integers(2))
            truncated = done and not terminated
            stream.append({"id": next_id, "first": first, "terminated": terminated, "truncated": truncated})
            next_id += 1
        streams.append(stream)
    return streams


def reference(streams: list[list[dict]], in_ring: set[int], n_step: int) -> dict[int, tuple]:
    """obs id -> (first next id, next obs id, reward sum, bootstrap factor, terminated) for every transition
    in the ring."""
    out = {}
    for stream in streams:
        for t, start in enumerate(stream[:-1]):
            if start["terminated"] or start["truncated"] or stream[t + 1]["first"]:
                continue  # an episode's last record starts no transition
            if start["id"] not in in_ring or stream[t + 1]["id"] not in in_ring:
                continue
            reward, scale, last = 0.0, 1.0, None
            for i in range(1, n_step + 1):
                if t + i >= len(stream) or stream[t + i]["first"]:
                    break  # the stream's newest record, or the previous record ended the episode
                record = stream[t + i]
                reward += scale * record["id"] / 1000
                last = record
                if record["terminated"] or record["truncated"]:
                    scale *= DISCOUNT
                    break
                scale *= DISCOUNT
            bootstrap = scale * (not last["terminated"])
            out[start["id"]] = (stream[t + 1]["id"], last["id"], reward, bootstrap, last["terminated"])
    return out


def insert_all(replay: ReplayBuffer, streams: list[list[dict]], rng: np.random.Generator) -> list[int]:
    """Inserts step by step, every env's record of a step in one message, envs in random order."""
    order = []
    for t in range(len(streams[0])):
        envs = rng.permutation(len(streams))
        rows = [streams[e][t] for e in envs]
        replay.insert(
            "actor",
            {
                "env_index": envs.astype(np.int32),
                "obs/state": np.array([[r["id"]] for r in rows], np.float32),
                "action": np.array([[r["id"]] for r in rows], np.float32),
                "reward": np.array([r["id"] / 1000 for r in rows], np.float32),
                "terminated": np.array([r["terminated"] for r in rows]),
                "truncated": np.array([r["truncated"] for r in rows]),
                "is_first": np.array([r["first"] for r in rows]),
            },
        )
        order += [r["id"] for r in rows]
    return order


@pytest.mark.parametrize("storage", ["device", "host"])
@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("capacity", [1000, 40], ids=["no_wrap", "wrap"])
def test_n_step_transitions_match_the_streams(storage, n_step, capacity):
    rng = np.random.default_rng(n_step + capacity)
    streams = make_streams(rng, num_envs=3, steps=30)
    replay = ReplayBuffer(SPEC, ReplayConfig(capacity=capacity, storage=storage), log=quiet)
    order = insert_all(replay, streams, rng)
    expected = reference(streams, set(order[-capacity:]), n_step)
    assert len(expected) == replay.num_transitions

    batch = jax.device_get(replay.sample(jax.random.PRNGKey(0), 256, 2, n_step=n_step, discount=DISCOUNT))
    obs_ids = batch.obs["state"][..., 0].astype(int).ravel()
    assert len(set(obs_ids.tolist())) > len(expected) // 2  # the draws cover the transitions
    for i, obs_id in enumerate(obs_ids):
        first_next_id, next_id, reward, bootstrap, terminated = expected[obs_id]
        assert batch.next_obs["state"].reshape(-1)[i] == next_id
        assert batch.action.reshape(-1)[i] == first_next_id  # the action taken at obs: the first next record's
        np.testing.assert_allclose(batch.reward.reshape(-1)[i], reward, rtol=1e-6)
        assert bool(batch.terminated.reshape(-1)[i]) == terminated
        if n_step == 1:
            assert batch.discount is None  # the loss bootstraps with its own discount
        else:
            np.testing.assert_allclose(batch.discount.reshape(-1)[i], bootstrap, rtol=1e-6)


def test_n_step_must_be_positive():
    replay = ReplayBuffer(SPEC, ReplayConfig(capacity=100), log=quiet)
    insert_all(replay, make_streams(np.random.default_rng(0), 1, 5), np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_step"):
        replay.sample(jax.random.PRNGKey(0), 4, n_step=0)
