"""Replay contracts: every sampled pair is exactly what was inserted, at any interleaving and wrap-around."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from serl_gs.data.records import RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.data.storage import plan_storage

CAM = "pixels/cam"
quiet = lambda message: None


class StreamWorld:
    """Ground truth for several actors' env streams: each record gets a unique id written into its frames.

    obs/state = [id, actor, env, episode, t]; obs/pixels/cam = the id's low byte in every pixel and its high
    byte in channel 1; reward = id / 1000; action = [id, -id].
    """

    def __init__(self, rng: np.random.Generator, envs_per_actor: dict[int | str, int], max_episode: int = 6):
        self.rng = rng
        self.max_episode = max_episode
        self.next_id = 1
        self.records_by_id: dict[int, dict] = {}
        self.predecessor: dict[int, int] = {}  # id of a non-first record -> id of the frame before it
        self.state = {}
        for actor, num_envs in envs_per_actor.items():
            for env in range(num_envs):
                self.state[(actor, env)] = {"episode": -1, "t": 0, "left": 0, "last_id": None, "ended": True}

    def _next_record(self, actor, env) -> dict:
        s = self.state[(actor, env)]
        rid = self.next_id
        self.next_id += 1
        if s["ended"]:
            s.update(episode=s["episode"] + 1, t=0, left=int(self.rng.integers(1, self.max_episode + 1)))
            is_first, terminated, truncated = True, False, False
        else:
            s["t"] += 1
            s["left"] -= 1
            is_first = False
            done = s["left"] == 0
            terminated = done and bool(self.rng.integers(2))
            truncated = done and not terminated
            self.predecessor[rid] = s["last_id"]
        s["ended"] = terminated or truncated
        s["last_id"] = rid
        record = {
            "env_index": env,
            "state": np.array([rid, hash(actor) % 97, env, s["episode"], s["t"]], np.float32),
            "pixels": np.stack(
                [np.full((4, 4), rid % 256), np.full((4, 4), rid // 256), np.full((4, 4), env)], -1
            ).astype(np.uint8),
            "action": np.array([rid, -rid], np.float32),
            "reward": np.float32(rid / 1000),
            "terminated": terminated,
            "truncated": truncated,
            "is_first": is_first,
        }
        self.records_by_id[rid] = record
        return record

    def message(self, actor, envs: list[int], max_per_env: int = 3) -> tuple[dict, list[int]]:
        """Records of a few envs of one actor, interleaved at random but in order within each env."""
        queue = []
        for env in envs:
            queue += [env] * int(self.rng.integers(1, max_per_env + 1))
        self.rng.shuffle(queue)  # a random interleaving keeps each env's records in order
        rows = [self._next_record(actor, env) for env in queue]
        records = {
            "env_index": np.array([r["env_index"] for r in rows], np.int32),
            "obs/state": np.stack([r["state"] for r in rows]),
            "obs/" + CAM: np.stack([r["pixels"] for r in rows]),
            "action": np.stack([r["action"] for r in rows]),
            "reward": np.array([r["reward"] for r in rows], np.float32),
            "terminated": np.array([r["terminated"] for r in rows], bool),
            "truncated": np.array([r["truncated"] for r in rows], bool),
            "is_first": np.array([r["is_first"] for r in rows], bool),
        }
        return records, [int(r["state"][0]) for r in rows]


def spec() -> RecordSpec:
    return RecordSpec(obs=((CAM, (4, 4, 3), "uint8"), ("state", (5,), "float32")), action_dim=2)


def expected_transitions(world: StreamWorld, inserted_ids: list[int], capacity: int) -> set[tuple[int, int]]:
    """(obs id, next id) pairs whose both frames are among the last `capacity` records inserted."""
    in_ring = set(inserted_ids[-capacity:])
    return {(world.predecessor[i], i) for i in in_ring if i in world.predecessor and world.predecessor[i] in in_ring}


def check_batch(world: StreamWorld, batch, expected: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Asserts every sampled transition is one that was inserted, field by field; returns the pairs seen."""
    b = jax.device_get(batch)
    obs_id = b.obs["state"][..., 0].astype(int).ravel()
    next_id = b.next_obs["state"][..., 0].astype(int).ravel()
    seen = set(zip(obs_id.tolist(), next_id.tolist(), strict=True))
    assert seen <= expected, f"sampled pairs never inserted: {sorted(seen - expected)[:5]}"
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    for i, (o, n) in enumerate(zip(obs_id, next_id, strict=True)):
        rec_o, rec_n = world.records_by_id[o], world.records_by_id[n]
        np.testing.assert_array_equal(flat(b.obs["state"])[i], rec_o["state"])
        np.testing.assert_array_equal(flat(b.obs[CAM])[i], rec_o["pixels"])
        np.testing.assert_array_equal(flat(b.next_obs["state"])[i], rec_n["state"])
        np.testing.assert_array_equal(flat(b.next_obs[CAM])[i], rec_n["pixels"])
        np.testing.assert_array_equal(flat(b.action)[i], rec_n["action"])
        assert flat(b.reward)[i] == rec_n["reward"]
        assert bool(flat(b.terminated)[i]) == rec_n["terminated"]
    return seen


@pytest.mark.parametrize("storage", ["device", "host"])
def test_pairing_is_exact_under_interleaving_episode_ends_and_wraparound(storage):
    rng = np.random.default_rng(0)
    envs = {0: 3, 1: 3, "actor-b": 2}  # 8 streams over 3 actors
    world = StreamWorld(rng, envs)
    capacity = 37  # not a multiple of anything in the stream so wrap points fall everywhere
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=capacity, storage=storage), log=quiet)
    inserted: list[int] = []
    key = jax.random.PRNGKey(0)
    all_seen: set[tuple[int, int]] = set()
    for step in range(120):
        actor = list(envs)[int(rng.integers(len(envs)))]
        chosen = sorted(rng.choice(envs[actor], size=int(rng.integers(1, envs[actor] + 1)), replace=False).tolist())
        records, ids = world.message(actor, chosen)
        replay.insert(actor, records)
        inserted += ids
        expected = expected_transitions(world, inserted, capacity)
        assert replay.num_transitions == len(expected)
        if not expected:
            continue
        key, sample_key = jax.random.split(key)
        batch = replay.sample(sample_key, batch_size=64, num_batches=2)
        assert batch.reward.shape == (2, 64)
        seen = check_batch(world, batch, expected)
        if step == 119:  # the final ring: enough draws reach every stored transition
            for _ in range(10):
                key, sample_key = jax.random.split(key)
                seen |= check_batch(world, replay.sample(sample_key, batch_size=64), expected)
            assert seen == expected
        all_seen |= seen
    assert replay.total_inserted > 10 * capacity  # wrapped many times
    assert replay.unpaired > 0  # some predecessors fell off the ring and were not paired
    # Episode ends of both kinds were sampled, with the true final frame as next_obs.
    ends = [world.records_by_id[n] for _, n in all_seen if world.records_by_id[n]["terminated"]]
    truncs = [world.records_by_id[n] for _, n in all_seen if world.records_by_id[n]["truncated"]]
    assert ends and truncs


def test_device_and_host_storage_sample_identically():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    world_a, world_b = StreamWorld(rng_a, {0: 4}), StreamWorld(rng_b, {0: 4})
    device = ReplayBuffer(spec(), ReplayConfig(capacity=16, storage="device"), log=quiet)
    host = ReplayBuffer(spec(), ReplayConfig(capacity=16, storage="host"), log=quiet)
    for _ in range(15):
        device.insert(0, world_a.message(0, [0, 1, 2, 3])[0])
        host.insert(0, world_b.message(0, [0, 1, 2, 3])[0])
    key = jax.random.PRNGKey(7)
    a, b = device.sample(key, 32, 3), host.sample(key, 32, 3)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_record_after_an_episode_end_without_is_first_is_not_paired():
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=8), log=quiet)
    world = StreamWorld(np.random.default_rng(0), {0: 1})
    first, _ = world.message(0, [0], max_per_env=1)
    replay.insert(0, first)
    records = {k: v.copy() for k, v in first.items()}
    records["is_first"][:] = False
    records["terminated"][:] = True
    replay.insert(0, records)  # ends the episode: paired with the first frame
    assert replay.num_transitions == 1
    records["terminated"][:] = False
    replay.insert(0, records)  # breaks the contract (no is_first after an end): stored, never paired
    assert replay.num_transitions == 1 and replay.unpaired == 1


def test_unknown_stream_record_is_not_paired_and_empty_replay_refuses_to_sample():
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=8), log=quiet)
    records, _ = StreamWorld(np.random.default_rng(0), {0: 1}).message(0, [0], max_per_env=1)
    records["is_first"][:] = False  # e.g. a learner restarted without its replay
    replay.insert(5, records)
    assert replay.num_transitions == 0 and replay.unpaired == 1
    with pytest.raises(ValueError, match="no complete transition"):
        replay.sample(jax.random.PRNGKey(0), 4)


@pytest.mark.parametrize("storage", ["device", "host"])
def test_save_and_restore_keep_frames_links_and_stream_positions(tmp_path, storage):
    rng = np.random.default_rng(1)
    world = StreamWorld(rng, {0: 2, "b": 2})
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=20, storage=storage), log=quiet)
    inserted = []
    for i in range(12):
        actor = [0, "b"][i % 2]
        records, ids = world.message(actor, [0, 1])
        replay.insert(actor, records)
        inserted += ids
    replay.save(tmp_path / "replay")
    replay.save(tmp_path / "replay")  # saving over an earlier save replaces it
    restored = ReplayBuffer.restore(tmp_path / "replay", log=quiet)
    assert restored.stats() == replay.stats()
    key = jax.random.PRNGKey(3)
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(replay.sample(key, 16)),
        jax.device_get(restored.sample(key, 16)),
    )
    # The streams carry on after the restore: new records pair with frames saved before.
    for i in range(6):
        actor = [0, "b"][i % 2]
        records, ids = world.message(actor, [0, 1])
        restored.insert(actor, records)
        inserted += ids
    expected = expected_transitions(world, inserted, 20)
    assert restored.num_transitions == len(expected)
    check_batch(world, restored.sample(key, 128), expected)


def test_restore_rejects_a_directory_without_a_replay(tmp_path):
    with pytest.raises(ValueError, match="no saved replay"):
        ReplayBuffer.restore(tmp_path, log=quiet)


def test_insert_validates_records():
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=8), log=quiet)
    records, _ = StreamWorld(np.random.default_rng(0), {0: 2}).message(0, [0, 1])
    bad = dict(records, reward=records["reward"].astype(np.float64))
    with pytest.raises(ValueError, match="reward"):
        replay.insert(0, bad)
    bad = dict(records, **{"obs/state": records["obs/state"][:, :3]})
    with pytest.raises(ValueError, match="obs/state"):
        replay.insert(0, bad)
    with pytest.raises(ValueError, match="env_index"):
        replay.insert(0, dict(records, env_index=np.full_like(records["env_index"], 1 << 30)))
    with pytest.raises(ValueError, match="actor_id"):
        replay.insert(1.5, records)
    with pytest.raises(ValueError, match="capacity"):
        ReplayConfig(capacity=1)


def test_insert_refuses_nan_and_stream_tables_stay_bounded_whatever_env_index_peers_choose():
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=8), log=quiet)
    world = StreamWorld(np.random.default_rng(0), {"honest": 1})
    records, _ = world.message("honest", [0], max_per_env=1)
    with pytest.raises(ValueError, match="'reward'] holds NaN"):
        replay.insert("honest", dict(records, reward=np.full_like(records["reward"], np.nan)))
    replay.insert("honest", records)
    # Sessions that each claim a huge env_index: without a bound, 9 bytes per env slot per session.
    far = dict(records, env_index=np.full_like(records["env_index"], 50_000))
    for session in range(5):
        replay.insert(f"flood:{session}", far)
    assert replay._stream_slots <= replay.max_stream_slots == 1 << 16
    assert replay.streams_forgotten >= 3 and "flood:4" in replay._streams  # the newest stays
    assert replay.total_inserted == 6  # every record was stored; only pairing state was forgotten


def test_write_sizes_compile_a_few_times_only():
    from serl_gs.data.storage import _device_write

    replay = ReplayBuffer(spec(), ReplayConfig(capacity=64), log=quiet)
    world = StreamWorld(np.random.default_rng(0), {0: 4})
    before = _device_write._cache_size()
    for _ in range(20):  # message sizes 1..12 fall in the buckets 8 and 16
        replay.insert(0, world.message(0, [0, 1, 2, 3])[0])
    assert _device_write._cache_size() - before <= 2


def test_storage_plan_prefers_device_when_it_fits():
    gib = 2**30
    assert plan_storage(4 * gib, "auto", 16 * gib, 64 * gib, 0.5).kind == "device"
    assert plan_storage(9 * gib, "auto", 16 * gib, 64 * gib, 0.5).kind == "host"
    assert plan_storage(9 * gib, "auto", None, 64 * gib, 0.5).kind == "device"  # CPU: device memory is host
    assert plan_storage(1, "host", 16 * gib, 64 * gib, 0.5).kind == "host"
    assert "GiB" in plan_storage(gib, "auto", 16 * gib, 64 * gib, 0.5).describe()
    with pytest.raises(ValueError, match="storage"):
        plan_storage(1, "gpu", None, 1, 0.5)


@pytest.mark.parametrize("storage", ["device", "host"])
def test_incremental_save_writes_only_new_slots_and_restores_like_a_whole_save(tmp_path, storage):
    rng = np.random.default_rng(4)
    world = StreamWorld(rng, {0: 2, "b": 2})
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=20, storage=storage), log=quiet)
    inserted = []

    def insert(messages: int) -> None:
        for i in range(messages):
            actor = [0, "b"][i % 2]
            records, ids = world.message(actor, [0, 1])
            replay.insert(actor, records)
            inserted.extend(ids)

    insert(4)
    replay.save(tmp_path / "replay")  # the first save is whole
    frames = tmp_path / "replay" / "obs.0.npy"
    inode = frames.stat().st_ino
    for messages in (3, 9):  # the second round wraps around the ring
        insert(messages)
        replay.save(tmp_path / "replay")
        assert frames.stat().st_ino == inode  # written in place: only the new slots (whole saves swap in new files)
    replay.save(tmp_path / "whole")
    incremental = ReplayBuffer.restore(tmp_path / "replay", log=quiet)
    whole = ReplayBuffer.restore(tmp_path / "whole", log=quiet)
    assert incremental.stats() == whole.stats() == replay.stats()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(incremental._storage.fields),
                 jax.device_get(whole._storage.fields))  # fmt: skip
    check_batch(world, incremental.sample(jax.random.PRNGKey(0), 128), expected_transitions(world, inserted, 20))


def test_a_crash_inside_an_incremental_save_drops_only_the_slots_being_rewritten(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    world = StreamWorld(rng, {0: 3})
    capacity = 24
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=capacity), log=quiet)
    inserted, after_save = [], []
    for _ in range(10):
        records, ids = world.message(0, [0, 1, 2])
        replay.insert(0, records)
        inserted += ids
    replay.save(tmp_path / "replay")
    saved_total = replay.total_inserted
    for _ in range(3):
        records, ids = world.message(0, [0, 1, 2])
        replay.insert(0, records)
        after_save.append(records)
    end_total = replay.total_inserted

    def crash(self, directory):  # the frames are written in place; the index never gets swapped in
        raise OSError("killed")

    monkeypatch.setattr(ReplayBuffer, "_write_index", crash)
    with pytest.raises(OSError, match="killed"):
        replay.save(tmp_path / "replay")
    monkeypatch.undo()
    restored = ReplayBuffer.restore(tmp_path / "replay", log=quiet)
    # The slots the new records went to held the oldest saved records: those are gone, the rest is intact.
    lost = set(inserted[max(saved_total - capacity, 0) : end_total - capacity])
    assert restored.total_inserted == saved_total and restored.restored_dropped == len(lost) > 0
    expected = {(a, b) for a, b in expected_transitions(world, inserted, capacity) if a not in lost and b not in lost}
    assert restored.num_transitions == len(expected)
    check_batch(world, restored.sample(jax.random.PRNGKey(1), 128), expected)
    # What the learner's receive log then re-inserts brings back exactly the replay before the crash.
    for records in after_save:
        restored.insert(0, records)
    assert restored.stats()["num_transitions"] == replay.stats()["num_transitions"]
    key = jax.random.PRNGKey(2)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(replay.sample(key, 64)),
                 jax.device_get(restored.sample(key, 64)))  # fmt: skip
