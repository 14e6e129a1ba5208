"""ParamPublisher -> ParamSubscriber: latest-only broadcast, late joiners, restarts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from flax import serialization

from serl_gs.transport import (
    PROTOCOL_VERSION,
    ActorTransportConfig,
    LearnerTransportConfig,
    ParamPublisher,
    ParamSubscriber,
    ProtocolMismatch,
    TransportError,
    wire,
)

FAST = {"poll_interval_s": 0.01, "linger_s": 0.2}


def learner_config(**changes) -> LearnerTransportConfig:
    base = {"transitions_port": 0, "params_port": 0, "params_snapshot_port": 0, **FAST}
    base.update(changes)
    return LearnerTransportConfig(**base)


def actor_config(publisher: ParamPublisher, **changes) -> ActorTransportConfig:
    base = {
        "actor_id": "a0",
        "params_port": publisher.port,
        "params_snapshot_port": publisher.snapshot_port,
        "reconnect_s": 0.02,
        "reconnect_max_s": 0.1,
        **FAST,
    }
    base.update(changes)
    return ActorTransportConfig(**base)


def test_a_late_joiner_gets_the_current_params_at_once():
    with ParamPublisher(learner_config()) as publisher:
        publisher.publish(b"v1", version=1)
        publisher.publish(b"v2", version=2)
        time.sleep(0.2)  # long published: PUB/SUB alone would never deliver it to a newcomer
        with ParamSubscriber(actor_config(publisher)) as subscriber:
            update = subscriber.wait(timeout=5)
            assert (update.version, update.data) == (2, b"v2")
            # From the snapshot port, without waiting for a next publish (nothing more was published).
            assert subscriber.stats()["snapshots_received"] >= 1
            assert subscriber.poll() is None  # nothing newer
            publisher.publish(b"v3", version=3)
            update = subscriber.wait(timeout=5)
            assert (update.version, update.data) == (3, b"v3")
            assert subscriber.version == 3


def test_a_slow_actor_skips_versions_instead_of_queueing_them():
    payload = np.random.default_rng(0).bytes(1 << 20)
    publisher = ParamPublisher(learner_config())
    subscriber = ParamSubscriber(actor_config(publisher))
    try:
        publisher.publish(b"first", version=0)
        assert subscriber.wait(timeout=5).version == 0
        for version in range(1, 51):  # 50 MB of parameters while the actor is busy stepping
            publisher.publish(payload + version.to_bytes(4, "little"), version=version)
            time.sleep(0.002)
        seen = []
        while not seen or seen[-1] != 50:
            update = subscriber.wait(timeout=10)  # the slow actor finally looks
            assert update is not None, f"no version newer than {seen} within 10 s"
            assert update.data[-4:] == update.version.to_bytes(4, "little")
            seen.append(update.version)
            time.sleep(0.3)  # ...and is slow again
        assert seen == sorted(set(seen)) and len(seen) < 50, seen  # it skipped versions
        received = subscriber.stats()
        # CONFLATE kept at most one update queued per look: a backlog would hand over every stale version at the
        # first look (the subscriber drains its socket and counts each newer version).
        assert received["updates_received"] <= 1 + len(seen), (received, seen)
        assert publisher.stats()["published"] == 51
    finally:
        subscriber.close()
        publisher.close()


def test_a_restarted_learner_is_followed_even_with_lower_versions():
    first = ParamPublisher(learner_config())
    ports = {"params_port": first.port, "params_snapshot_port": first.snapshot_port}
    subscriber = ParamSubscriber(actor_config(first))
    try:
        first.publish(b"old", version=100)
        assert subscriber.wait(timeout=5).version == 100
        first.close()
        second = ParamPublisher(learner_config(**ports))
        try:
            second.publish(b"restored", version=40)  # resumed from an older checkpoint
            update = subscriber.wait(timeout=5)
            assert (update.version, update.data) == (40, b"restored")
            assert subscriber.stats()["learner_restarts"] == 1
        finally:
            second.close()
    finally:
        subscriber.close()


def test_publish_validates_its_arguments():
    with ParamPublisher(learner_config(max_param_bytes=1024)) as publisher:
        publisher.publish(b"x", version=5)
        with pytest.raises(ValueError, match="must increase"):
            publisher.publish(b"x", version=5)
        with pytest.raises(ValueError, match="bytes"):
            publisher.publish({"w": 1}, version=6)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_param_bytes"):
            publisher.publish(b"x" * 2048, version=6)
        with pytest.raises(ValueError, match="version"):
            publisher.publish(b"x", version=-1)
    with pytest.raises(TransportError, match="closed"):
        publisher.publish(b"x", version=7)


def test_flax_params_round_trip_through_the_broadcast():
    params = {
        "encoder": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "log_alpha": np.float32(-1.5),
    }
    with (
        ParamPublisher(learner_config()) as publisher,
        ParamSubscriber(actor_config(publisher)) as subscriber,
    ):
        publisher.publish(serialization.to_bytes(params), version=1)
        update = subscriber.wait(timeout=5)
        template = {"encoder": {"kernel": np.zeros((2, 3), np.float32)}, "log_alpha": np.float32(0)}
        restored = serialization.from_bytes(template, update.data)
        np.testing.assert_array_equal(restored["encoder"]["kernel"], params["encoder"]["kernel"])
        assert float(restored["log_alpha"]) == -1.5


def test_a_learner_speaking_another_protocol_is_refused_naming_both_versions():
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    snapshot = ctx.socket(zmq.ROUTER)
    pub.linger = snapshot.linger = 0
    cfg = ActorTransportConfig(
        actor_id="a0",
        params_port=pub.bind_to_random_port("tcp://127.0.0.1"),
        params_snapshot_port=snapshot.bind_to_random_port("tcp://127.0.0.1"),
        **FAST,
    )
    try:
        with ParamSubscriber(cfg) as subscriber:
            deadline = time.monotonic() + 5
            while not snapshot.poll(10) and time.monotonic() < deadline:
                assert subscriber.poll() is None  # the subscriber works inside poll()/wait()
            routing_id, _ = snapshot.recv_multipart()
            future = wire.encode_param_message({"v": PROTOCOL_VERSION + 1, "type": "params", "version": 1}, b"")
            snapshot.send_multipart([routing_id, future])
            with pytest.raises(ProtocolMismatch, match=f"version {PROTOCOL_VERSION + 1}.*version {PROTOCOL_VERSION}"):
                subscriber.wait(timeout=5)
    finally:
        pub.close()
        snapshot.close()
        ctx.term()


def test_junk_on_the_snapshot_port_is_counted_and_ignored():
    with ParamPublisher(learner_config()) as publisher:
        publisher.publish(b"p", version=1)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{publisher.snapshot_port}")
        import pickle

        junk = [b"", b"\x00\x00", pickle.dumps({"type": "get_params"}), b"\x01\x00\x00\x00\xc1", b"x" * 3000]
        for message in junk:
            sock.send(message)
        sock.send_multipart([b"a", b"b"])
        deadline = time.monotonic() + 5
        while publisher.stats()["rejected_total"] < len(junk) and time.monotonic() < deadline:
            time.sleep(0.02)
        sock.close()
        ctx.term()
        assert publisher.stats()["rejected_total"] >= len(junk)
        with ParamSubscriber(actor_config(publisher)) as subscriber:
            assert subscriber.wait(timeout=5).data == b"p"  # still serving
