"""Frame stacks rebuilt by the replay from frames stored once: exactly the frames the policy saw, at episode
starts (first frame repeated), under interleaved envs and actors and ring wrap-around; memory of one frame per
record."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_data_replay import CAM, StreamWorld, quiet, spec  # noqa: I001  (tests/ is on sys.path under pytest)

from serl_gs.data.frame_stack import FrameStacker, stack_complete, stack_obs_spec
from serl_gs.data.records import RecordSpec, reset_records, step_records
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.data.storage import slot_bytes
from serl_gs.nodes.cli import set_render_threads

K = 3


def expected_stack(world: StreamWorld, rid: int, k: int = K) -> list[int]:
    """Ids of the frames the policy saw at record rid, oldest first: the episode's first frame repeats."""
    ids = [rid]
    while len(ids) < k:
        ids.insert(0, world.predecessor.get(ids[0], ids[0]))
    return ids


def stack_ids(pixels: np.ndarray) -> list[int]:
    """StreamWorld writes a record's id into its frame: low byte in channel 0, high byte in channel 1."""
    return [int(pixels[0, 0, 3 * i]) + 256 * int(pixels[0, 0, 3 * i + 1]) for i in range(pixels.shape[-1] // 3)]


def stackable(world: StreamWorld, inserted: list[int], capacity: int) -> set[tuple[int, int]]:
    """(obs id, next id) pairs whose next frame and every frame of the obs stack are still in the ring."""
    ring = set(inserted[-capacity:])
    return {
        (world.predecessor[i], i)
        for i in ring
        if i in world.predecessor and set(expected_stack(world, world.predecessor[i])) <= ring
    }


def check_stacks(world: StreamWorld, batch, expected: set[tuple[int, int]]) -> set[tuple[int, int]]:
    b = jax.device_get(batch)
    obs, next_obs = b.obs[CAM].reshape(-1, 4, 4, 3 * K), b.next_obs[CAM].reshape(-1, 4, 4, 3 * K)
    states = b.obs["state"].reshape(-1, 5)
    seen = set()
    for i in range(obs.shape[0]):
        o_ids, n_ids = stack_ids(obs[i]), stack_ids(next_obs[i])
        o, n = o_ids[-1], n_ids[-1]
        assert (o, n) in expected, f"sampled ({o}, {n}) cannot be stacked exactly"
        assert o_ids == expected_stack(world, o), (o_ids, expected_stack(world, o))
        assert n_ids == expected_stack(world, n), (n_ids, expected_stack(world, n))
        assert int(states[i][0]) == o  # non-pixel observations are not stacked
        seen.add((o, n))
    return seen


@pytest.mark.parametrize("storage", ["device", "host"])
def test_stacks_are_the_frames_the_policy_saw_under_interleaving_episode_ends_and_wraparound(storage):
    rng = np.random.default_rng(0)
    envs = {0: 3, 1: 2, "actor-b": 2}
    world = StreamWorld(rng, envs, max_episode=5)
    capacity = 41
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=capacity, storage=storage, frame_stack=K), log=quiet)
    inserted: list[int] = []
    key = jax.random.PRNGKey(0)
    seen_all: set[tuple[int, int]] = set()
    for step in range(100):
        actor = list(envs)[int(rng.integers(len(envs)))]
        chosen = sorted(rng.choice(envs[actor], size=int(rng.integers(1, envs[actor] + 1)), replace=False).tolist())
        records, ids = world.message(actor, chosen)
        replay.insert(actor, records)
        inserted += ids
        expected = stackable(world, inserted, capacity)
        if not expected:
            continue
        key, sample_key = jax.random.split(key)
        seen = check_stacks(world, replay.sample(sample_key, batch_size=64, num_batches=2), expected)
        if step == 99:  # enough draws reach every stackable transition of the final ring
            for _ in range(10):
                key, sample_key = jax.random.split(key)
                seen |= check_stacks(world, replay.sample(sample_key, batch_size=64), expected)
            assert seen == expected
        seen_all |= seen
    assert replay.total_inserted > 5 * capacity
    # Every case happened: stacks at an episode's first and second frames (repeats), and full histories.
    repeats = {len(set(expected_stack(world, o))) for o, _ in seen_all}
    assert repeats == {1, 2, 3}
    # Some linked transitions were left out because their history fell off the ring.
    assert any(
        (world.predecessor[i], i) not in stackable(world, inserted, capacity)
        for i in inserted[-capacity:]
        if i in world.predecessor and world.predecessor[i] in inserted[-capacity:]
    )


def test_n_step_next_obs_is_the_stack_at_the_last_record():
    rng = np.random.default_rng(5)
    world = StreamWorld(rng, {0: 2}, max_episode=6)
    replay = ReplayBuffer(spec(), ReplayConfig(capacity=64, frame_stack=K), log=quiet)
    inserted = []
    for _ in range(20):
        records, ids = world.message(0, [0, 1])
        replay.insert(0, records)
        inserted += ids
    batch = jax.device_get(replay.sample(jax.random.PRNGKey(1), batch_size=128, n_step=3, discount=0.9))
    for o_px, n_px in zip(batch.obs[CAM].reshape(-1, 4, 4, 9), batch.next_obs[CAM].reshape(-1, 4, 4, 9), strict=True):
        o_ids, n_ids = stack_ids(o_px), stack_ids(n_px)
        assert o_ids == expected_stack(world, o_ids[-1]) and n_ids == expected_stack(world, n_ids[-1])
        chain, last = [o_ids[-1]], n_ids[-1]  # the next stack ends 1 to 3 records after the obs, same episode
        while chain[-1] != last:
            chain.append(next(i for i, p in world.predecessor.items() if p == chain[-1]))
        assert 2 <= len(chain) <= 4


def test_replay_memory_is_one_frame_per_record_whatever_the_stack():
    frame_spec = RecordSpec(obs=((CAM, (64, 64, 3), "uint8"),), action_dim=1)
    one = ReplayBuffer(frame_spec, ReplayConfig(capacity=1000, frame_stack=1), log=quiet)
    three = ReplayBuffer(frame_spec, ReplayConfig(capacity=1000, frame_stack=3), log=quiet)
    assert one.plan.bytes_needed == three.plan.bytes_needed == 1000 * slot_bytes(frame_spec)
    assert slot_bytes(frame_spec) == 64 * 64 * 3 + 4 + 4 + 1 + 4 + 4  # frame, action, reward, terminated, 2 links
    assert three._storage.fields["obs"][CAM].shape == (1000, 64, 64, 3)


def test_stack_complete_follows_links_and_stops_at_first_frames():
    # Slots: 0 first; 1 after 0; 2 after 1; 3 unknown predecessor; 4 after 3; 5 after 4; 6 first; 7 after 6.
    prev_gap = np.array([0, 1, 1, -1, 1, 1, 0, 1], np.int32)
    np.testing.assert_array_equal(
        np.asarray(stack_complete(prev_gap, 3)), [True, True, True, False, False, True, True, True]
    )
    np.testing.assert_array_equal(np.asarray(stack_complete(prev_gap, 2)), prev_gap >= 0)


def test_frame_stacker_repeats_first_frames_and_restarts_where_episodes_restart():
    frame = lambda v: np.full((2, 1, 1, 3), v, np.uint8)  # 2 envs, 1x1 images
    stacker = FrameStacker(3)
    out = stacker.reset({CAM: frame([[[[1]]], [[[1]]]]), "state": np.zeros((2, 1))})
    np.testing.assert_array_equal(out[CAM][:, 0, 0, ::3], [[1, 1, 1], [1, 1, 1]])
    out = stacker.step({CAM: np.stack([np.full((1, 1, 3), 2), np.full((1, 1, 3), 5)]).astype(np.uint8)}, [False, True])
    np.testing.assert_array_equal(out[CAM][:, 0, 0, ::3], [[1, 1, 2], [5, 5, 5]])
    out = stacker.step({CAM: np.stack([np.full((1, 1, 3), 3), np.full((1, 1, 3), 6)]).astype(np.uint8)}, [False, False])
    np.testing.assert_array_equal(out[CAM][:, 0, 0, ::3], [[1, 2, 3], [5, 5, 6]])
    assert stack_obs_spec({CAM: jax.ShapeDtypeStruct((8, 8, 3), np.uint8)}, 3)[CAM].shape == (8, 8, 9)
    with pytest.raises(ValueError, match="frame_stack must be >= 1, got 0"):
        FrameStacker(0)
    with pytest.raises(RuntimeError, match="reset"):
        FrameStacker(3).step({CAM: np.zeros((1, 1, 1, 3), np.uint8)}, [False])
    state_only = FrameStacker(3)  # no cameras: observations pass through
    state_only.reset({"state": np.ones((2, 1))})
    np.testing.assert_array_equal(state_only.step({"state": np.zeros((2, 1))}, [True, False])["state"], 0)


@pytest.mark.slow
def test_replay_stacks_equal_what_the_actor_policy_saw_from_the_pixel_env():
    """The real pixel vector env with autoreset, two actors' streams interleaved into one replay: every sampled
    stack equals the stack FrameStacker gave the policy at that record (identified by its state)."""
    import gymnasium as gym

    import envs  # noqa: F401

    set_render_threads(1)  # as the actor does (torch's OpenMP threads spin-wait on a busy machine)
    seen_by_policy: dict[bytes, np.ndarray] = {}  # state bytes -> the policy's stack there
    vec_kwargs = dict(num_envs=3, physics="mujoco", array_backend="numpy", obs_mode="pixels", image_size=8,
                      render_backend="reference", episode_length=4, state_in_obs=True, action_repeat=2)  # fmt: skip
    actors = {name: gym.make_vec("serl_gs/CartpoleBalance-v0", **vec_kwargs) for name in ("a", "b")}
    stackers = {name: FrameStacker(K) for name in actors}
    frame_spec = RecordSpec(obs=(("pixels/fixed", (8, 8, 3), "uint8"), ("state", (5,), "float32")), action_dim=1)
    replay = ReplayBuffer(frame_spec, ReplayConfig(capacity=30, frame_stack=K), log=quiet)
    obs = {}
    for seed, (name, vec) in enumerate(actors.items()):
        first, _ = vec.reset(seed=seed)
        obs[name] = stackers[name].reset(first)
        replay.insert(name, reset_records(first, 1))
        for s, px in zip(first["state"], obs[name]["pixels/fixed"], strict=True):
            seen_by_policy[s.tobytes()] = px
    rng = np.random.default_rng(0)
    for _ in range(12):
        for name, vec in actors.items():
            before = obs[name]["pixels/fixed"]
            actions = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
            nxt, reward, terminated, truncated, infos = vec.step(actions)
            done = terminated | truncated
            obs[name] = stackers[name].step(nxt, done)
            for i in range(3):
                if done[i]:  # the final frame ends the last transition's next_obs stack; no policy acts on it
                    final = infos["final_obs"]
                    rolled = np.concatenate([before[i][..., 3:], final["pixels/fixed"][i]], axis=-1)
                    seen_by_policy[final["state"][i].tobytes()] = rolled
                seen_by_policy[nxt["state"][i].tobytes()] = obs[name]["pixels/fixed"][i]
            replay.insert(name, step_records(nxt, actions, reward, terminated, truncated, infos))
    assert replay.total_inserted > replay.capacity  # wrapped around
    batch = jax.device_get(replay.sample(jax.random.PRNGKey(0), batch_size=256))
    for part in (batch.obs, batch.next_obs):
        for s, px in zip(part["state"][0], part["pixels/fixed"][0], strict=True):
            np.testing.assert_array_equal(px, seen_by_policy[s.tobytes()])
    for vec in actors.values():
        vec.close()
