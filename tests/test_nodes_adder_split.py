"""A step larger than `max_message_bytes` crosses the real transport as several messages and arrives whole."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq

from serl_gs.data.records import RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.nodes.adder import Adder, EnvStep, split_by_env
from serl_gs.transport import ActorTransportConfig, LearnerTransportConfig, TransitionClient, TransitionServer, wire

FAST = {"poll_interval_s": 0.01, "linger_s": 0.5}
NUM_ENVS, FRAME = 24, 8  # 24 envs x 8x8x3 frames: ~5 kB a step, over a 2 kB cap


def _obs(step: int, envs=None) -> dict:
    envs = np.arange(NUM_ENVS) if envs is None else envs
    pixels = (envs[:, None, None, None] * 7 + step * 3 + np.arange(FRAME * FRAME * 3).reshape(1, FRAME, FRAME, 3))
    return {"state": np.stack([envs, np.full_like(envs, step)], 1).astype(np.float32),
            "pixels/front": (pixels % 251).astype(np.uint8)}  # fmt: skip


def test_split_by_env_keeps_each_env_whole_and_in_order():
    ended = np.zeros(NUM_ENVS, bool)
    ended[[3, 4, 20]] = True
    obs = _obs(1)
    from serl_gs.data.records import step_records

    records = step_records(obs, np.zeros((NUM_ENVS, 2), np.float32), np.zeros(NUM_ENVS, np.float32), ended,
                           np.zeros(NUM_ENVS, bool), {"final_obs": _obs(9), "_final_obs": ended})  # fmt: skip
    row = sum(v.nbytes for v in records.values()) // len(records["env_index"])
    parts = split_by_env(records, 5 * row)
    assert len(parts) > 1 and all(sum(v.nbytes for v in p.values()) <= 5 * row for p in parts)
    envs = [sorted(set(p["env_index"].tolist())) for p in parts]
    assert sorted(e for p in envs for e in p) == list(range(NUM_ENVS))  # each env in exactly one part
    for p in parts:  # env 3's final frame comes before its new episode's first frame
        for e in (3, 4, 20):
            rows = np.flatnonzero(p["env_index"] == e)
            if rows.size:
                assert p["is_first"][rows].tolist() == [False, True]
    with pytest.raises(ValueError, match="one env's records take"):
        split_by_env(records, row)  # env 3's two rows cannot fit one row's bytes
    assert split_by_env(records, 10**9)[0] is records


def test_an_oversized_step_arrives_whole_through_the_real_transport():
    cap = 2048
    server = TransitionServer(LearnerTransportConfig(transitions_port=0, params_port=0, params_snapshot_port=0,
                                                     max_message_bytes=cap, **FAST))  # fmt: skip
    client = TransitionClient(ActorTransportConfig(actor_id="a0", transitions_port=server.port, max_message_bytes=cap,
                                                   reconnect_s=0.02, reconnect_max_s=0.1, **FAST))  # fmt: skip
    stop = threading.Event()
    adder = Adder(client, num_envs=NUM_ENVS, action_dim=2, stop=stop)
    spec = RecordSpec(obs=(("pixels/front", (FRAME, FRAME, 3), "uint8"), ("state", (2,), "float32")), action_dim=2)
    replay = ReplayBuffer(spec, ReplayConfig(capacity=1000), log=lambda _: None)
    try:
        assert adder.add_first(_obs(0))
        ended = np.zeros(NUM_ENVS, bool)
        ended[5] = True  # env 5's episode ends: its final frame and the next first frame travel together
        step = EnvStep(_obs(1), np.ones(NUM_ENVS, np.float32), ended, np.zeros(NUM_ENVS, bool),
                       {"final_obs": _obs(7), "_final_obs": ended})  # fmt: skip
        assert adder.add(np.zeros((NUM_ENVS, 2), np.float32), step, param_version=3)
        assert adder.split_steps == 2  # both steps went out in several messages
        got = []  # get() acknowledges each batch, so the actor's window moves on
        while (batch := server.get(timeout=10.0)) is not None:
            got.append(batch)
            if sum(b.header.num_records for b in got) == 2 * NUM_ENVS + 1:
                break
    finally:
        client.close()
        server.close()
    parts = [b.header.part for b in got]
    assert all(b.header.nbytes <= cap for b in got)
    assert len(got) > 2 and parts[0] == (0, parts[0][1]) and [p[0] for p in parts[: parts[0][1]]] == list(
        range(parts[0][1])
    )
    for b in got:
        records = {k: v for k, v in b.arrays.items()}
        replay.insert("a0", records)
    # Every env's record of each step inserted exactly once, with its own frames.
    received = {k: np.concatenate([b.arrays[k] for b in got]) for k in got[0].arrays}
    for step_index, obs in ((0, _obs(0)), (1, _obs(1))):
        rows = np.flatnonzero(received["obs/state"][:, 1] == step_index)
        assert sorted(received["env_index"][rows].tolist()) == list(range(NUM_ENVS))
        order = np.argsort(received["env_index"][rows])
        np.testing.assert_array_equal(received["obs/pixels/front"][rows][order], obs["pixels/front"])
    final = np.flatnonzero(received["obs/state"][:, 1] == 7)
    assert received["env_index"][final].tolist() == [5]
    assert replay.total_inserted == 2 * NUM_ENVS + 1 and replay.num_transitions == NUM_ENVS  # one per env


def test_malformed_part_fields_are_dropped_and_counted():
    server = TransitionServer(LearnerTransportConfig(transitions_port=0, params_port=0, params_snapshot_port=0, **FAST))
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    env_index = np.arange(2, dtype=np.int32)
    try:
        for bad in ([2, 2], [0], [-1, 3], "0/2", [0, wire.MAX_PARTS + 1]):
            header = wire.make_header("batch", actor="x", session=1, seq=0, base=0, tx=0, index=0, dropped_before=0,
                                      param_version=0, n=2, arrays=[["env_index", "int32", [2]]], part=bad)  # fmt: skip
            sock.send_multipart([msgpack.packb(header), env_index.tobytes()])

        def counted() -> bool:
            return server.stats()["rejected"]["bad_header"] >= 5

        deadline = threading.Event()
        for _ in range(500):
            if counted():
                break
            deadline.wait(0.01)
        assert server.stats()["rejected"]["bad_header"] == 5 and server.get(timeout=0.0) is None
    finally:
        sock.close(0)
        server.close()
