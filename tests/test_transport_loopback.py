"""TransitionServer <-> TransitionClient over real loopback sockets, in one process."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from serl_gs.transport import (
    PROTOCOL_VERSION,
    ActorTransportConfig,
    AddressInUse,
    BatchRejected,
    LearnerTransportConfig,
    ProtocolMismatch,
    TransitionClient,
    TransitionServer,
    TransportError,
    fetch_learner_stats,
    wire,
)

FAST = {"poll_interval_s": 0.01, "linger_s": 0.5}


def learner_config(**changes) -> LearnerTransportConfig:
    base = {"transitions_port": 0, "params_port": 0, "params_snapshot_port": 0, **FAST}
    base.update(changes)
    return LearnerTransportConfig(**base)


def actor_config(server: TransitionServer, actor_id: str = "a0", **changes) -> ActorTransportConfig:
    base = {
        "actor_id": actor_id,
        "transitions_port": server.port,
        "reconnect_s": 0.02,
        "reconnect_max_s": 0.1,
    }
    base.update(FAST)
    base.update(changes)
    return ActorTransportConfig(**base)


def records(step: int, n: int = 2, frame: int = 4) -> dict[str, np.ndarray]:
    """A batch of the actors' record contract whose contents encode `step`, to check integrity."""
    return {
        "env_index": np.arange(n, dtype=np.int32),
        "obs/state": np.full((n, 7), step, np.float32),
        "obs/pixels/front": np.full((n, frame, frame, 3), step % 251, np.uint8),
        "action": np.full((n, 4), -step, np.float32),
        "reward": np.full(n, 0.5 * step, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
        "is_first": np.full(n, step == 0),
    }


def step_of(batch) -> int:
    step = int(batch.arrays["obs/state"][0, 0])
    assert (batch.arrays["obs/state"] == step).all()
    assert (batch.arrays["obs/pixels/front"] == step % 251).all()
    assert (batch.arrays["action"] == -step).all()
    return step


def drain(server: TransitionServer, count: int, timeout: float = 20.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batch = server.get(timeout=0.2)
        if batch is not None:
            got.append(batch)
    return got


def wait_connected(client: TransitionClient, timeout: float = 10.0) -> None:
    """Until the handshake is done: before it, send() may fill the away buffer instead of blocking."""
    deadline = time.monotonic() + timeout
    while not client.stats()["connected"]:
        assert time.monotonic() < deadline, "the client never connected"
        time.sleep(0.01)


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    """Polls `predicate` until it holds; fails naming `what` after `timeout` (no fixed sleep before a check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_every_env_dtype_and_shape_round_trips():
    rng = np.random.default_rng(1)
    n = 3
    arrays = {
        "env_index": np.array([5, 0, 2], np.int32),
        "obs/state": rng.standard_normal((n, 7)).astype(np.float32),
        "obs/pixels/front": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        "obs/pixels/wrist": rng.integers(0, 256, (n, 8, 12, 3), dtype=np.uint8),
        "action": rng.standard_normal((n, 4)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
        "terminated": np.array([True, False, True]),
        "truncated": np.array([False, True, False]),
        "is_first": np.array([False, False, True]),
        "info/success": np.array([1, 0, 1], np.int8),
        "info/qpos": rng.standard_normal((n, 9)),
        "info/step": np.array([1, 2, 3], np.int64),
        "info/half": rng.standard_normal((n, 2)).astype(np.float16),
        "info/u16": np.array([[1], [2], [65535]], np.uint16),
    }
    with TransitionServer(learner_config()) as server, TransitionClient(actor_config(server)) as client:
        client.send(arrays, param_version=7)
        batch = server.get(timeout=10)
        assert batch is not None
        assert batch.header.actor_id == "a0" and batch.header.session == client.session
        assert (batch.header.seq, batch.header.index, batch.header.param_version) == (0, 0, 7)
        assert batch.header.num_records == n and batch.header.dropped_before == 0
        assert list(batch.arrays) == list(arrays)
        for name, value in arrays.items():
            assert batch.arrays[name].dtype == value.dtype, name
            np.testing.assert_array_equal(batch.arrays[name], value)
        assert client.flush(timeout=5)


def test_four_concurrent_actors_deliver_every_batch_exactly_once_in_order():
    per_actor = 60
    with TransitionServer(learner_config(credits_per_actor=4)) as server:
        clients = [TransitionClient(actor_config(server, f"actor-{i}")) for i in range(4)]

        def run(client: TransitionClient) -> None:
            for step in range(per_actor):
                client.send(records(step), param_version=step // 10)

        threads = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        got = drain(server, 4 * per_actor)
        for t in threads:
            t.join(timeout=10)
        assert len(got) == 4 * per_actor
        assert server.get(timeout=0.3) is None  # nothing extra
        for client in clients:
            mine = [b for b in got if b.header.actor_id == client.actor_id]
            assert [b.header.seq for b in mine] == list(range(per_actor))
            assert [step_of(b) for b in mine] == list(range(per_actor))
            assert [b.header.param_version for b in mine] == [s // 10 for s in range(per_actor)]
            assert client.flush(timeout=5)
            client.close()
        stats = server.stats(current_param_version=6)
        assert stats["batches_in"] == 4 * per_actor and stats["duplicates_dropped"] == 0
        assert stats["records_in"] == 4 * per_actor * 2
        assert stats["rejected_total"] == 0 and stats["queue_batches"] == 0
        assert {a["param_lag"] for a in stats["actors"].values()} == {1}


def test_credits_bound_the_learner_queue_and_zero_credits_pause_actors():
    with TransitionServer(learner_config(credits_per_actor=2)) as server:
        cfg = actor_config(server, max_pending_batches=3, block_timeout_s=0.5)
        with TransitionClient(cfg) as client:
            wait_connected(client)
            for step in range(5):  # 2 in flight (credits) + 3 pending
                client.send(records(step), param_version=0)
            # The client's window is bounded by the learner's credits: 2 out, 3 held back, and so 2 queued.
            wait_until(
                lambda: client.stats()["unconfirmed_batches"] == 2 and client.stats()["pending_batches"] == 3,
                "the client to fill its 2-credit window",
            )
            wait_until(lambda: server.stats()["queue_batches"] == 2, "both batches in the learner's queue")
            assert client.stats()["unconfirmed_batches"] == 2  # a slow learner holds at most `credits`
            with pytest.raises(TimeoutError, match="block_timeout_s"):
                client.send(records(5), param_version=0)
            server.set_credits(0)
            got = drain(server, 2)
            # The acks of those two carry credits=0: once they freed the window, the client may send nothing.
            wait_until(lambda: client.stats()["unconfirmed_batches"] == 0, "the acks of the drained batches")
            assert client.stats()["credits"] == 0 and client.stats()["pending_batches"] == 3
            assert server.stats()["queue_batches"] == 0  # paused: nothing new came in
            server.set_credits(3)
            got += drain(server, 3)
            assert [step_of(b) for b in got] == [0, 1, 2, 3, 4]
            with pytest.raises(ValueError, match="credits"):
                server.set_credits(10_000)


def test_drop_oldest_counts_drops_and_marks_the_hole():
    with TransitionServer(learner_config(credits_per_actor=0)) as server:
        cfg = actor_config(server, max_pending_batches=2, overflow="drop_oldest")
        with TransitionClient(cfg) as client:
            wait_connected(client)
            for step in range(6):  # never blocks; keeps the newest two
                client.send(records(step), param_version=0)
            stats = client.stats()
            assert (stats["dropped_batches"], stats["dropped_records"]) == (4, 8)
            server.set_credits(4)
            got = drain(server, 2)
            assert [step_of(b) for b in got] == [4, 5]
            assert [b.header.index for b in got] == [4, 5]
            assert [b.header.dropped_before for b in got] == [4, 0]
            assert [b.header.seq for b in got] == [0, 1]  # transport seqs stay contiguous


def test_actor_keeps_sending_while_the_learner_is_away_and_the_backlog_arrives_when_it_comes():
    absent = TransitionServer(learner_config())
    port = absent.port
    absent.close()  # nobody listens on `port` now
    batch_bytes = sum(a.nbytes for a in records(0).values())
    cfg = actor_config(absent, max_pending_batches=2, block_timeout_s=0.2, away_buffer_bytes=20 * batch_bytes)
    with TransitionClient(cfg) as client:
        for step in range(20):  # far past max_pending_batches, none blocks: the learner is away
            client.send(records(step), param_version=0)
        assert client.stats()["pending_batches"] == 20
        with pytest.raises(TimeoutError, match="block_timeout_s"):  # the away buffer is bounded too
            client.send(records(20), param_version=0)
        with TransitionServer(learner_config(transitions_port=port)) as server:
            got = drain(server, 20)
            assert [step_of(b) for b in got] == list(range(20))
            assert client.flush(timeout=5) and client.stats()["pending_bytes"] == 0


def test_learner_restart_on_the_same_port_loses_and_duplicates_nothing():
    total = 120
    first = TransitionServer(learner_config(credits_per_actor=8))
    port = first.port
    client = TransitionClient(actor_config(first, ack_timeout_s=1.0))
    sender = threading.Thread(target=lambda: [client.send(records(s), 0) for s in range(total)])
    sender.start()
    got = drain(first, 40)
    assert len(got) == 40
    first.close()  # batches it received but never handed out are not acked: the actor keeps them
    second = TransitionServer(learner_config(transitions_port=port, credits_per_actor=8))
    try:
        got += drain(second, total - 40)
        sender.join(timeout=10)
        assert [step_of(b) for b in got] == list(range(total))
        assert [b.header.seq for b in got] == list(range(total))
        assert second.get(timeout=0.3) is None
        assert client.flush(timeout=5)
        assert client.stats()["learner_restarts"] == 1
    finally:
        client.close()
        second.close()


def test_resume_positions_drop_batches_a_previous_learner_already_took():
    from serl_gs.transport import StreamPosition

    with TransitionServer(learner_config(credits_per_actor=0)) as server:
        client = TransitionClient(actor_config(server))
        for step in range(4):
            client.send(records(step), 0)
        # As if a crashed learner had checkpointed seqs 0-1 with its replay but its acks were lost.
        positions = [StreamPosition("a0", client.session, 2)]
        port = server.port
    with TransitionServer(learner_config(transitions_port=port), resume_positions=positions) as server:
        got = drain(server, 2)
        assert [b.header.seq for b in got] == [2, 3]
        assert server.get(timeout=0.3) is None
        assert client.flush(timeout=5)
        assert {(p.actor_id, p.next_seq) for p in server.positions()} == {("a0", 4)}
        client.close()


def test_a_batch_the_learner_refuses_surfaces_as_an_error_on_the_actor():
    with TransitionServer(learner_config(max_message_bytes=4096)) as server:
        with TransitionClient(actor_config(server)) as client:
            client.send(records(0, frame=64), param_version=0)  # ~25 KB > 4 KiB on the learner
            deadline = time.monotonic() + 5
            while client.stats()["error"] is None and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(BatchRejected, match="oversized"):
                client.send(records(1), param_version=0)
        assert server.stats()["rejected"]["oversized"] == 1


def test_an_actor_refused_for_lack_of_room_holds_its_batches_and_gets_in_later():
    server = TransitionServer(learner_config(max_actors=1, stream_evict_idle_s=0.5))
    first = TransitionClient(actor_config(server, "first"))
    second = None
    try:
        first.send(records(0), 0)
        assert server.get(timeout=5) is not None
        second = TransitionClient(actor_config(server, "second", full_retry_s=0.2, full_retry_max_s=0.4))
        second.send(records(0), 0)
        deadline = time.monotonic() + 5
        while second.stats()["refused_full"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second.stats()["refused_full"] >= 1 and second.stats()["error"] is None  # holding, not failed
        assert server.stats()["rejected"]["too_many_actors"] >= 1
        first.close()  # its stream idles out and gives its place (stream_evict_idle_s)
        batch = server.get(timeout=10)
        assert batch is not None and batch.header.actor_id == "second" and step_of(batch) == 0
        second.send(records(1), 0)
        assert step_of(server.get(timeout=5)) == 1 and second.flush(timeout=5)
    finally:
        for node in (second, first, server):
            if node is not None:
                node.close()


def test_a_peer_with_another_protocol_version_is_refused_naming_both():
    with TransitionServer(learner_config()) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.rcvtimeo = 5000
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        sock.send(msgpack.packb({"v": PROTOCOL_VERSION + 1, "type": "ping"}))
        reply = msgpack.unpackb(sock.recv())
        assert reply["type"] == "refused"
        assert f"version {PROTOCOL_VERSION + 1}" in reply["reason"] and f"version {PROTOCOL_VERSION}" in reply["reason"]
        sock.close()
        ctx.term()
        assert server.stats()["rejected"]["version"] == 1


def test_an_actor_talking_to_a_newer_learner_raises_protocol_mismatch():
    ctx = zmq.Context()
    fake = ctx.socket(zmq.ROUTER)
    fake.linger = 0
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    cfg = ActorTransportConfig(actor_id="a0", transitions_port=port, **FAST)
    client = TransitionClient(cfg)
    try:
        assert fake.poll(5000)
        routing_id, _ = fake.recv_multipart()  # the client's first ping
        fake.send_multipart([routing_id, msgpack.packb({"v": PROTOCOL_VERSION + 1, "type": "ack"})])
        deadline = time.monotonic() + 5
        while client.stats()["error"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(ProtocolMismatch, match=f"version {PROTOCOL_VERSION + 1}.*version {PROTOCOL_VERSION}"):
            client.send(records(0), 0)
    finally:
        client.close(timeout=0)
        fake.close()
        ctx.term()


def test_stats_request_reply():
    with TransitionServer(learner_config()) as server, TransitionClient(actor_config(server)) as client:
        client.send(records(0), param_version=3)
        assert server.get(timeout=5) is not None
        stats = fetch_learner_stats(actor_config(server, "monitor"), timeout_s=5)
        assert stats["batches_in"] == 1 and stats["actors"]["a0"]["param_version"] == 3
    with pytest.raises(TimeoutError):
        fetch_learner_stats(ActorTransportConfig(actor_id="m", transitions_port=server.port), timeout_s=0.3)


def test_close_is_prompt_and_final():
    server = TransitionServer(learner_config())
    client = TransitionClient(actor_config(server))
    client.send(records(0), 0)
    assert server.get(timeout=5) is not None
    waiter_result = []
    waiter = threading.Thread(target=lambda: waiter_result.append(server.get(timeout=None)))
    waiter.start()
    server.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and waiter_result == [None]  # a blocked get() returns on close
    assert server.get(timeout=0) is None and server.closed
    client.send(records(1), 0)  # the learner is gone: queued, not lost, not blocking
    closer = threading.Thread(target=client.close, kwargs={"timeout": 0.2})
    closer.start()
    closer.join(timeout=10)  # close gives up on the unsent batch after its timeout instead of hanging
    assert not closer.is_alive()
    with pytest.raises(TransportError, match="closed"):
        client.send(records(2), 0)


def test_constructors_reject_wrong_config_types_and_busy_ports():
    with pytest.raises(ValueError, match="LearnerTransportConfig"):
        TransitionServer(ActorTransportConfig(actor_id="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ActorTransportConfig"):
        TransitionClient(LearnerTransportConfig())  # type: ignore[arg-type]
    with TransitionServer(learner_config()) as server, pytest.raises(AddressInUse, match="transitions_port"):
        TransitionServer(learner_config(transitions_port=server.port))
    with TransitionServer(learner_config()) as server, TransitionClient(actor_config(server)) as client:
        with pytest.raises(ValueError, match="param_version"):
            client.send(records(0), param_version="3")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_message_bytes"):
            big = ActorTransportConfig(actor_id="b", transitions_port=server.port, max_message_bytes=2048)
            with TransitionClient(big) as small_client:
                small_client.send(records(0, frame=32), 0)
    assert wire.PROTOCOL_VERSION == PROTOCOL_VERSION


def test_manual_ack_holds_credits_until_the_learner_has_stored_the_batch():
    server = TransitionServer(learner_config(credits_per_actor=2))
    client = TransitionClient(actor_config(server))
    try:
        for step in range(4):
            client.send(records(step), param_version=0)
        first, second = server.get(timeout=5, ack=False), server.get(timeout=5, ack=False)
        assert [step_of(first), step_of(second)] == [0, 1]
        # Two credits, both held by unacked batches: the client keeps the other two back.
        wait_until(lambda: client.stats()["pending_batches"] == 2, "the client to hold back 2 batches")
        assert client.stats()["unconfirmed_batches"] == 2
        assert server.get(timeout=0.2) is None
        assert [(p.actor_id, p.next_seq) for p in server.positions()] == [("a0", 0)]
        server.ack(second.header)  # cumulative: acknowledges the first one too
        got = drain(server, 2)
        assert [step_of(b) for b in got] == [2, 3]
        assert client.flush(timeout=5)
        assert [(p.actor_id, p.next_seq) for p in server.positions()] == [("a0", 4)]
        with pytest.raises(ValueError, match="BatchHeader"):
            server.ack(got[0])  # type: ignore[arg-type]
        forged = got[0].header.__class__(**{**got[0].header.__dict__, "seq": 99})
        with pytest.raises(ValueError, match="never delivered"):
            server.ack(forged)
    finally:
        client.close()
        server.close()


def test_two_actors_with_the_same_id_are_separate_streams():
    # agentlace shared one delivery counter per store name: the second actor's data never arrived.
    with TransitionServer(learner_config()) as server:
        twins = [TransitionClient(actor_config(server, "same-name")) for _ in range(2)]
        try:
            for step in range(10):
                for twin in twins:
                    twin.send(records(step), param_version=0)
            got = drain(server, 20)
            assert len(got) == 20 and server.get(timeout=0.3) is None
            for twin in twins:
                mine = [b for b in got if b.header.session == twin.session]
                assert [step_of(b) for b in mine] == list(range(10))
            assert server.stats()["actors"]["same-name"]["sessions"] == 2
        finally:
            for twin in twins:
                twin.close()


def _non_loopback_address() -> str | None:
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("bind, reachable", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_learner_listens_on_loopback_unless_told_otherwise(bind, reachable):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with TransitionServer(learner_config(bind=bind)) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://{address}:{server.port}")
        sock.send(msgpack.packb({"v": PROTOCOL_VERSION, "type": "stats"}))
        answered = bool(sock.poll(1000))
        sock.close()
        ctx.term()
    assert answered == reachable
