"""Authentication on (CURVE keys derived from a shared secret file): only key holders get anything in
or anything out; everyone else is counted."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from serl_gs.transport import (
    ActorTransportConfig,
    AuthConfig,
    LearnerTransportConfig,
    ParamPublisher,
    ParamSubscriber,
    TransitionClient,
    TransitionServer,
    write_secret_file,
)

FAST = {"poll_interval_s": 0.01, "linger_s": 0.2, "socket_timeout_s": 1.0}


@pytest.fixture()
def secrets_dir(tmp_path):
    write_secret_file(str(tmp_path / "cluster.secret"))
    write_secret_file(str(tmp_path / "intruder.secret"))
    return tmp_path


def records(step: int) -> dict[str, np.ndarray]:
    return {"env_index": np.arange(2, dtype=np.int32), "obs/state": np.full((2, 7), step, np.float32)}


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture()
def learner(secrets_dir):
    cfg = LearnerTransportConfig(
        transitions_port=0,
        params_port=0,
        params_snapshot_port=0,
        auth=AuthConfig(secret_file=str(secrets_dir / "cluster.secret")),
        **FAST,
    )
    with TransitionServer(cfg) as server, ParamPublisher(cfg) as publisher:
        publisher.publish(b"secret weights", version=1)
        yield server, publisher


def actor_config(learner, actor_id: str, secret_file: str | None) -> ActorTransportConfig:
    server, publisher = learner
    return ActorTransportConfig(
        actor_id=actor_id,
        transitions_port=server.port,
        params_port=publisher.port,
        params_snapshot_port=publisher.snapshot_port,
        auth=AuthConfig(secret_file=secret_file),
        reconnect_s=0.05,
        reconnect_max_s=0.2,
        **FAST,
    )


def test_an_actor_with_the_secret_sends_and_receives(learner, secrets_dir):
    server, _ = learner
    cfg = actor_config(learner, "trusted", str(secrets_dir / "cluster.secret"))
    with TransitionClient(cfg) as client, ParamSubscriber(cfg) as subscriber:
        assert subscriber.wait(timeout=5).data == b"secret weights"
        client.send(records(3), param_version=1)
        batch = server.get(timeout=5)
        assert batch is not None and batch.arrays["obs/state"][0, 0] == 3
        assert client.flush(timeout=5)
    assert server.stats()["rejected"]["unauthenticated"] == 0


@pytest.mark.parametrize("who", ["wrong_secret", "no_secret"])
def test_an_actor_without_the_secret_gets_nothing_in_and_learns_nothing(learner, secrets_dir, who):
    server, publisher = learner
    secret = str(secrets_dir / "intruder.secret") if who == "wrong_secret" else None
    cfg = actor_config(learner, "intruder", secret)
    with TransitionClient(cfg) as client, ParamSubscriber(cfg) as subscriber:
        for step in range(3):
            client.send(records(step), param_version=0)  # queued; never accepted
        assert subscriber.wait(timeout=1.0) is None  # no parameters leak
        assert server.get(timeout=0.5) is None
        assert wait_until(lambda: server.stats()["rejected"]["unauthenticated"] > 0)
        stats = client.stats()
        assert stats["credits"] == 0 and stats["batches_sent"] == 0  # the learner never answered
        if who == "wrong_secret":
            assert wait_until(lambda: client.stats()["handshake_failures"] > 0)
        client.close(timeout=0)
    learner_stats = server.stats()
    assert learner_stats["batches_in"] == 0 and learner_stats["connections"] == 0
    assert learner_stats["actors"] == {}
    assert publisher.stats()["snapshot_requests"] == 0


def test_a_raw_plaintext_peer_is_refused_at_the_handshake(learner):
    server, _ = learner
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    sock.send(b'{"type": "stats"}')
    assert not sock.poll(500)  # no reply, not even an error message
    sock.close()
    ctx.term()
    assert wait_until(lambda: server.stats()["rejected"]["unauthenticated"] > 0)
    assert server.stats()["batches_in"] == 0
