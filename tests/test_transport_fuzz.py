"""Hostile input: >= 10,000 random, truncated, oversized and pickled messages at a live learner.

The server must stay up, accept none of them, and count every one under a named reason.
"""

from __future__ import annotations

import pickle
import time
import zlib

import msgpack
import numpy as np
import pytest
import zmq
from test_transport_wire import lz4_frame  # noqa: I001  (tests/ is on sys.path under pytest)

from serl_gs.transport import (
    PROTOCOL_VERSION,
    ActorTransportConfig,
    LearnerTransportConfig,
    TransitionClient,
    TransitionServer,
)

MAX_MESSAGE_BYTES = 16 * 1024
FAST = {"poll_interval_s": 0.01, "linger_s": 0.2}
LEARNER = {
    "transitions_port": 0,
    "params_port": 0,
    "params_snapshot_port": 0,
    "reject_log_interval_s": 60.0,
    **FAST,
}


def valid_batch(rng: np.random.Generator) -> tuple[dict, list[bytes]]:
    """A correct batch (header, frames): the fuzzer breaks each copy in exactly one way."""
    n = int(rng.integers(1, 4))
    header = {
        "v": PROTOCOL_VERSION,
        "type": "batch",
        "actor": "fuzzer",
        "session": int(rng.integers(0, 1 << 62)),
        "seq": 0,
        "base": 0,
        "tx": 0,
        "index": 0,
        "dropped_before": 0,
        "param_version": 0,
        "n": n,
        "arrays": [["env_index", "int32", [n]], ["obs/state", "float32", [n, 7]], ["done", "bool", [n]]],
    }
    frames = [np.arange(n, dtype=np.int32).tobytes(), np.zeros((n, 7), np.float32).tobytes(), bytes(n)]
    return header, frames


def agentlace_request(rng: np.random.Generator) -> dict:
    transitions = [
        {"observations": {"state": rng.standard_normal(7)}, "actions": rng.standard_normal(4), "rewards": 0.0}
        for _ in range(int(rng.integers(1, 3)))
    ]
    return {"type": "datastore", "store_name": "actor_env", "payload": {"data": transitions, "last_id": 1}}


def broken_batch(rng: np.random.Generator, kind: int) -> list[bytes]:
    header, frames = valid_batch(rng)
    if kind == 0:  # a data frame one byte short
        i = int(rng.integers(len(frames)))
        frames[i] = frames[i][:-1]
    elif kind == 1:  # an extra frame
        frames.append(b"\0" * 4)
    elif kind == 2:  # a missing frame
        frames.pop()
    elif kind == 3:  # a field of the wrong type
        key = str(rng.choice(["seq", "session", "n", "tx", "base", "param_version", "index"]))
        header[key] = [True, 1 << 63, "7", 1.5, None][int(rng.integers(5))]
    elif kind == 4:  # a missing field
        del header[str(rng.choice(["seq", "actor", "session", "n", "arrays", "type"]))]
    elif kind == 5:  # a dtype that is not plain data
        header["arrays"][1][1] = str(rng.choice(["object", "complex64", "U8", "V4", "float128"]))
    elif kind == 6:  # shapes that disagree with n
        header["arrays"][1][2] = [header["n"] + 1, 7]
    elif kind == 7:  # no env_index
        header["arrays"][0][0] = "env_idx"
    elif kind == 8:  # another protocol version
        header["v"] = PROTOCOL_VERSION + int(rng.integers(1, 5))
    elif kind == 9:  # unknown message type
        header["type"] = "exec"
    elif kind == 10:  # oversized: frames under the frame limit, total over max_message_bytes
        header["n"] = 600
        header["arrays"] = [["env_index", "int32", [600]], ["obs/state", "float32", [600, 7]]]
        frames = [np.arange(600, dtype=np.int32).tobytes(), bytes(600 * 7 * 4)] * 2
        frames = frames[:2] + [bytes(MAX_MESSAGE_BYTES // 2)] * 2
    elif kind == 11:  # too many frames
        frames = [b"\0"] * 70
    elif kind == 12:  # base ahead of seq
        header["base"] = 5
    return [msgpack.packb(header), *frames]


def junk_message(rng: np.random.Generator, i: int) -> list[bytes]:
    kind = i % 12
    if kind == 0:
        return [rng.bytes(int(rng.integers(0, 300)))]
    if kind == 1:
        return [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(2, 6)))]
    if kind == 2:
        return [pickle.dumps(agentlace_request(rng), protocol=int(rng.integers(2, 6)))]
    if kind == 3:  # exactly what agentlace puts on the wire: lz4(pickle(dict))
        return [lz4_frame(pickle.dumps(agentlace_request(rng)))]
    if kind == 4:
        return [zlib.compress(pickle.dumps(agentlace_request(rng)))]
    if kind == 5:  # a valid header cut short
        packed = msgpack.packb(valid_batch(rng)[0])
        return [packed[: int(rng.integers(1, len(packed)))]]
    if kind == 6:  # msgpack, but not a map / junk maps
        value = [[1, 2], 7, "batch", None, {"v": PROTOCOL_VERSION}, {"v": PROTOCOL_VERSION, "type": 3}]
        return [msgpack.packb(value[int(rng.integers(len(value)))])]
    if kind == 7:  # REQ-style envelope (empty delimiter first), as an agentlace client would send
        return [b"", lz4_frame(pickle.dumps(agentlace_request(rng)))]
    if kind == 8:  # msgpack claiming huge containers
        return [bytes([0xDF]) + b"\xff\xff\xff\xff", bytes([0xDD]) + b"\x7f\xff\xff\xff"][i % 2 : i % 2 + 1]
    if kind == 9:  # pickle inside a valid-looking multipart batch
        return [pickle.dumps(valid_batch(rng)[0]), *valid_batch(rng)[1]]
    return broken_batch(rng, int(rng.integers(13)))


def test_ten_thousand_hostile_messages_are_all_rejected_and_counted():
    rng = np.random.default_rng(1234)
    count = 10_000
    cfg = LearnerTransportConfig(max_message_bytes=MAX_MESSAGE_BYTES, **LEARNER)
    with TransitionServer(cfg) as server:
        ctx = zmq.Context()
        fuzzer = ctx.socket(zmq.DEALER)
        fuzzer.linger = 0
        fuzzer.sndtimeo = 10_000
        fuzzer.connect(f"tcp://127.0.0.1:{server.port}")
        for i in range(count):
            fuzzer.send_multipart(junk_message(rng, i))
        deadline = time.monotonic() + 60
        while server.stats()["rejected_total"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = server.stats()
        fuzzer.close()
        ctx.term()
        assert stats["rejected_total"] == count, stats["rejected"]
        assert stats["batches_in"] == 0 and stats["streams"] == 0 and stats["queue_batches"] == 0
        rejected = stats["rejected"]
        assert rejected["internal_error"] == 0
        for reason in (
            "pickle",
            "lz4_frame",
            "compressed",
            "malformed",
            "bad_header",
            "bad_arrays",
            "version",
            "oversized",
        ):
            assert rejected[reason] > 0, reason
        # Still serving honest actors.
        actor = ActorTransportConfig(actor_id="honest", transitions_port=server.port, **FAST)
        with TransitionClient(actor) as client:
            client.send({"env_index": np.arange(2, dtype=np.int32)}, param_version=0)
            assert server.get(timeout=5) is not None


def test_a_frame_beyond_the_size_limit_drops_that_connection_only():
    cfg = LearnerTransportConfig(max_message_bytes=4096, **LEARNER)
    with TransitionServer(cfg) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        sock.send(b"\0" * (4096 + 128 * 1024))  # over MAXMSGSIZE: libzmq closes the connection unread
        deadline = time.monotonic() + 5
        while server.stats()["disconnections"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats()["disconnections"] >= 1
        sock.close()
        ctx.term()
        actor = ActorTransportConfig(actor_id="honest", transitions_port=server.port, **FAST)
        with TransitionClient(actor) as client:
            client.send({"env_index": np.arange(2, dtype=np.int32)}, param_version=0)
            assert server.get(timeout=5) is not None


@pytest.mark.parametrize("seed", [0, 1])
def test_junk_replies_do_not_break_an_actor(seed):
    rng = np.random.default_rng(seed)
    ctx = zmq.Context()
    fake = ctx.socket(zmq.ROUTER)
    fake.linger = 0
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    client = TransitionClient(ActorTransportConfig(actor_id="a", transitions_port=port, **FAST))
    try:
        assert fake.poll(5000)
        routing_id = fake.recv_multipart()[0]
        replies = [junk_message(rng, i) for i in range(300)]
        replies.append([msgpack.packb({"v": PROTOCOL_VERSION, "type": "ack", "session": -5})])
        for reply in replies:
            fake.send_multipart([routing_id, *reply])
        deadline = time.monotonic() + 5
        while client.stats()["bad_replies"] < 250 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = client.stats()
        assert stats["bad_replies"] >= 250
        # Junk never turns into an error, credits or a learner identity.
        assert stats["error"] is None or "protocol version" in stats["error"]
        assert stats["credits"] == 0
    finally:
        client.close(timeout=0)
        fake.close()
        ctx.term()
