"""Hostile and mistaken input at a live learner: nothing a peer sends stops it or locks out a real actor.

One learner (cartpole, tiny networks) serves the whole file. Each test sends what a wrong or hostile peer
would, on the transitions, parameter and snapshot ports, and checks that the learner refused it under a
named counter, said why, and still serves an honest actor.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time

import msgpack
import numpy as np
import pytest
import zmq
from test_transport_wire import lz4_frame  # noqa: I001  (tests/ is on sys.path under pytest)

from serl_gs.agents.config import AgentConfig
from serl_gs.data.records import reset_records
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import ActorTransportConfig, BatchRejected, LearnerTransportConfig, TransitionClient, wire
from serl_gs.transport.config import MIB, port_layout

ENV = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=20, physics="mujoco")
OTHER_TASK = EnvSpec("serl_gs/PandaPickCube-v0", physics="mujoco")
TINY_AGENT = AgentConfig(hidden_dims=(16, 16), critic_ensemble_size=2, batch_size=16, critic_actor_ratio=1)
FAST = {"poll_interval_s": 0.01, "linger_s": 0.2}


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    config = LearnerConfig(
        env=ENV,
        agent=TINY_AGENT,
        replay=ReplayConfig(capacity=5000),
        rate=RateLimiterConfig(utd=0.5, min_inserts=40, tolerance=20.0, auto=False),
        transport=LearnerTransportConfig(
            **port_layout(0), max_message_bytes=MIB, stream_evict_idle_s=1.0, reject_log_interval_s=60.0, **FAST
        ),
        run_dir=str(tmp_path_factory.mktemp("learner")),
        publish_every=5,
        checkpoint_every=10_000,
        log_every_s=0.5,
    )
    node = Learner(config)
    yield node
    node.close()


def _actor_config(learner: Learner, actor_id: str, **changes) -> ActorTransportConfig:
    return ActorTransportConfig(
        actor_id=actor_id,
        transitions_port=learner.server.port,
        params_port=learner.publisher.port,
        params_snapshot_port=learner.publisher.snapshot_port,
        **{**FAST, **changes},
    )


def _pump(learner: Learner, predicate, timeout: float, what: str) -> None:
    """Runs the learner's receive path (no training) until `predicate()`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        learner.receive(timeout=0.02)


def _records(spec: EnvSpec, num_envs: int = 2) -> dict[str, np.ndarray]:
    """A real env's first records (what its actor sends first)."""
    vec = spec.make_vec(num_envs, seed=0)
    try:
        obs, _ = vec.reset(seed=0)
        return reset_records(obs, vec.single_action_space.shape[0])
    finally:
        vec.close()


def _rejected(learner: Learner, reason: str) -> int:
    return learner.server.stats()["rejected"][reason]


def _refused_by_the_learner(learner: Learner, actor_id: str, records: dict, reason: str, times: int = 1) -> str:
    """Sends `records` `times` times from a real client; returns the error its client stops with."""
    before, stored = _rejected(learner, reason), learner.counters["records"]
    with TransitionClient(_actor_config(learner, actor_id)) as client:
        for _ in range(times):
            client.send(records, param_version=-1)
        _pump(learner, lambda: _rejected(learner, reason) >= before + times, 20, f"{times} '{reason}' refusals")
        deadline = time.monotonic() + 10
        while client.stats()["error"] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(BatchRejected) as refused:
            client.send(records, param_version=-1)
    assert learner.counters["records"] == stored  # nothing of it was stored
    assert refused.value.reason == reason
    return refused.value.detail


def test_records_of_another_task_are_refused_at_the_first_batch_naming_both_schemas(learner, caplog):
    caplog.set_level(logging.INFO, logger="serl_gs")
    detail = _refused_by_the_learner(learner, "panda", _records(OTHER_TASK), "schema", times=3)
    # Both schemas, so the user sees at once what differs.
    assert "obs/state: float32[10]" in detail and "action: float32[4]" in detail  # the actor's
    assert "obs/state: float32[5]" in detail and "action: float32[1]" in detail  # the learner's
    assert "serl_gs/CartpoleBalance-v0" in detail
    logged = [r.getMessage() for r in caplog.records if "refused actor 'panda'" in r.getMessage()]
    assert len(logged) == 1, logged  # once per peer, not once per batch
    assert learner.report(1.0, learner.counters.copy())["rejected/schema"] >= 3


@pytest.mark.parametrize(
    "change, reason, says",
    [
        (lambda r: {"env_index": r["env_index"]}, "schema", "records lack ['action'"),  # was KeyError: 'terminated'
        (lambda r: {k: v for k, v in r.items() if k != "terminated"}, "schema", "lack ['terminated']"),
        (lambda r: {**r, "obs/extra": r["obs/state"]}, "schema", "observations ['extra', 'state']"),
        (lambda r: {**r, "bonus": r["reward"]}, "schema", "unknown record keys ['bonus']"),
        (lambda r: {**r, "reward": r["reward"].astype(np.float64)}, "schema", "records['reward'] is float64"),
        (lambda r: {**r, "reward": np.full_like(r["reward"], np.nan)}, "bad_records", "'reward'] holds NaN"),
        (lambda r: {**r, "env_index": r["env_index"] + (1 << 21)}, "bad_records", "env_index 2097"),
        (lambda r: {**r, "extras/intervened": np.ones((2, 2), bool)}, "bad_records", "extras/intervened has shape"),
    ],
)
def test_batches_with_missing_extra_or_bad_fields_are_refused(learner, change, reason, says):
    detail = _refused_by_the_learner(learner, "mistaken", change(_records(ENV)), reason)
    assert says in detail, detail


def test_extras_the_learner_does_not_know_are_carried_and_honest_records_stored(learner):
    records = {**_records(ENV), "extras/my_metric": np.ones((2, 3), np.float32)}
    stored = learner.counters["records"]
    with TransitionClient(_actor_config(learner, "honest")) as client:
        client.send(records, param_version=-1)
        _pump(learner, lambda: learner.counters["records"] == stored + 2, 20, "the honest batch")
        assert client.flush(timeout=10) and client.stats()["error"] is None


def test_an_actor_of_another_task_refuses_to_start_before_sending_anything(learner):
    from serl_gs.nodes.actor import ActorConfig, TaskMismatch, run_actor

    config = ActorConfig(
        env=OTHER_TASK,
        transport=_actor_config(learner, "wrong-task", block_timeout_s=0.2),
        num_envs=2,
        max_steps=3,
        learner_wait_s=30.0,  # the learner is up: its policy arrives in milliseconds
    )
    with pytest.raises(TaskMismatch) as refused:
        run_actor(config)
    message = str(refused.value)
    assert "\n" not in message
    assert "env=serl_gs/PandaPickCube-v0" in message and "env=serl_gs/CartpoleBalance-v0" in message
    assert "actions [4]" in message and "actions [1]" in message
    assert "wrong-task" not in learner.server.stats()["actors"]  # it sent nothing (its pings keep no stream)


# ---- floods that try to fill the learner's tables ---------------------------------------------------------


@contextlib.contextmanager
def _raw(port: int, kind: int = zmq.DEALER):
    """A bare ZeroMQ socket at the learner: what an attacker (or agentlace) would use."""
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.sndtimeo = 10_000
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield sock
    finally:
        sock.close()
        ctx.term()


def _batch(records: dict, actor: str, session: int) -> list[bytes]:
    """A well-formed batch message, the first of its stream (what a real client would put on the wire)."""
    n, specs, buffers = wire.describe_arrays(records, copy=True)
    header = wire.make_header(
        "batch", actor=actor, session=session, seq=0, base=0, tx=0, index=0, dropped_before=0, param_version=-1,
        n=n, arrays=[spec.to_wire() for spec in specs],
    )  # fmt: skip
    return [wire.pack(header), *(b.tobytes() for b in buffers)]


def _stored_from_a_real_actor(learner: Learner, actor_id: str, timeout: float = 30.0) -> None:
    """A real client still gets in: its batch is stored (with backoff, if the learner had no room)."""
    stored = learner.counters[f"records/{actor_id}"]
    with TransitionClient(_actor_config(learner, actor_id, full_retry_s=0.2, full_retry_max_s=1.0)) as client:
        client.send(_records(ENV), param_version=-1)
        _pump(learner, lambda: learner.counters[f"records/{actor_id}"] == stored + 2, timeout, f"{actor_id}'s batch")
        assert client.stats()["error"] is None


def test_pings_with_random_session_ids_make_no_stream_and_a_real_actor_gets_in(learner):
    rng = np.random.default_rng(0)
    streams = learner.server.stats()["streams"]
    with _raw(learner.server.port) as sock:
        for _ in range(1100):  # more than max_actors=1024: once enough to lock every real actor out
            session, tx = int(rng.integers(1 << 62)), int(rng.integers(1 << 20))
            sock.send(wire.pack_message("ping", actor=f"junk{session % 977}", session=session, base=0, tx=tx))
        acks = 0
        while sock.poll(2000) and acks < 1100:
            acks += msgpack.unpackb(sock.recv())["type"] == "ack"
    assert acks == 1100  # each answered from the ping alone
    stats = learner.server.stats()  # and nothing kept (earlier tests' refused streams may expire meanwhile)
    assert stats["streams"] <= streams and not any(actor.startswith("junk") for actor in stats["actors"])
    _stored_from_a_real_actor(learner, "after-pings")


def test_well_formed_batches_from_many_sessions_cannot_lock_a_real_actor_out(learner):
    """1,100 sessions (more than max_actors=1024) each send a first batch, of another schema, then of the
    learner's own: refused streams give their place at once, idle ones after stream_evict_idle_s."""
    wrong = _records(OTHER_TASK)
    right = _records(ENV)
    refused, stored = _rejected(learner, "schema"), learner.counters["records"]
    with _raw(learner.server.port) as sock:
        for session in range(1100):
            sock.send_multipart(_batch(wrong, "flood", session))
            if session % 128 == 127:
                learner.receive(timeout=0.0)
        _pump(learner, lambda: _rejected(learner, "schema") >= refused + 1100, 60, "1,100 refusals")
        assert learner.server.stats()["streams"] <= 1024
        _stored_from_a_real_actor(learner, "after-wrong-flood")
        for session in range(1100):  # the learner's own schema: stored (no authentication without CURVE)
            sock.send_multipart(_batch(right, "flood-right", 10_000 + session))
            if session % 128 == 127:
                learner.receive(timeout=0.0)
        _pump(learner, lambda: learner.counters["records"] >= stored + 2 * 1024, 60, "the flood's batches")
    assert learner.server.stats()["streams"] <= 1024
    _stored_from_a_real_actor(learner, "after-right-flood")  # waits for idle flood streams to give way
    assert learner.server.stats()["streams_evicted"] > 0


def test_junk_on_every_port_is_counted_by_reason_and_agentlace_traffic_is_named(learner):
    agentlace = pickle.dumps({"type": "datastore", "payload": {"data": [{"obs": np.zeros(3)}]}})
    before = _rejected_by_reason(learner)
    with _raw(learner.server.port) as transitions, _raw(learner.publisher.snapshot_port) as snapshot:
        for _ in range(20):
            transitions.send_multipart([b"", lz4_frame(agentlace)])  # agentlace's REQ client: lz4(pickle)
            transitions.send_multipart([b"", agentlace])
            transitions.send(b"\x93\x01\x02")  # msgpack, not a map
            snapshot.send_multipart([b"", lz4_frame(agentlace)])
            snapshot.send(agentlace)
            snapshot.send(b"junk")
            transitions.send(wire.pack_message("stats"))  # answered, up to 20 a second
        deadline = time.monotonic() + 20
        while _total(learner) < sum(before.values()) + 120 and time.monotonic() < deadline:
            time.sleep(0.05)
    after = _rejected_by_reason(learner)
    grew = {reason: after[reason] - before.get(reason, 0) for reason in after}
    assert grew["lz4_frame"] == 40 and grew["pickle"] >= 40 and grew["malformed"] >= 40, grew
    assert grew.get("internal_error", 0) == 0
    metrics = learner.report(1.0, learner.counters.copy())
    assert metrics["rejected/lz4_frame"] >= 40 and metrics["rejected"] >= sum(grew.values())


def _rejected_by_reason(learner: Learner) -> dict[str, int]:
    """The learner's rejected metrics by reason (transitions, parameter and snapshot ports together)."""
    metrics = learner.report(1.0, learner.counters.copy())
    return {key.split("/", 1)[1]: value for key, value in metrics.items() if key.startswith("rejected/")}


def _total(learner: Learner) -> int:
    return sum(_rejected_by_reason(learner).values())



def test_oversized_batches_that_arrive_are_refused_and_bigger_frames_cost_only_their_connection(learner):
    blob = np.zeros((2, 80_000), np.float32)  # two 640 KB frames: each under the frame limit, together over 1 MiB
    big = {**_records(ENV), "extras/blob_a": blob, "extras/blob_b": blob}
    before = _rejected(learner, "oversized")
    with TransitionClient(_actor_config(learner, "big", max_message_bytes=4 * MIB)) as client:
        client.send(big, param_version=-1)
        deadline = time.monotonic() + 20
        while client.stats()["error"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "oversized" in client.stats()["error"]
    assert _rejected(learner, "oversized") == before + 1
    disconnections = learner.server.stats()["disconnections"]
    with _raw(learner.server.port) as sock:
        sock.send(b"\0" * (2 * MIB))  # one frame over the limit: libzmq closes that connection unread
        deadline = time.monotonic() + 10
        while learner.server.stats()["disconnections"] == disconnections and time.monotonic() < deadline:
            time.sleep(0.02)
    assert learner.server.stats()["disconnections"] > disconnections
    _stored_from_a_real_actor(learner, "after-oversized")


def test_junk_subscriptions_and_snapshot_floods_leave_the_parameters_flowing(learner):
    from serl_gs.transport import ParamSubscriber

    before = _rejected_by_reason(learner)
    with _raw(learner.publisher.port, zmq.SUB) as junk_sub, _raw(learner.publisher.snapshot_port) as flood:
        for i in range(300):  # each would be a trie entry of the publisher's without XPUB_MANUAL
            junk_sub.setsockopt(zmq.SUBSCRIBE, f"topic-{i}".encode())
        request = wire.encode_param_message(wire.make_header("get_params", have_version=-1, have_incarnation=-1))
        for _ in range(300):  # each answered with the whole policy, up to 100 a second
            flood.send(request)
        deadline = time.monotonic() + 20
        while _total(learner) < sum(before.values()) + 300 + 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        grew = {k: v - before.get(k, 0) for k, v in _rejected_by_reason(learner).items()}
        assert grew["bad_header"] >= 300 and grew["rate_limited"] >= 100, grew
        with ParamSubscriber(_actor_config(learner, "subscriber")) as params:
            version = learner.publisher.version
            assert params.wait(timeout=20) is not None and params.version == version


def _flood(learner: Learner, stop, sent: list[int]) -> None:
    """Junk and protocol-shaped messages on all three ports until `stop`, at a pace two cores can take."""
    from test_transport_fuzz import junk_message

    rng = np.random.default_rng(7)
    wrong = _records(OTHER_TASK)
    request = wire.encode_param_message(wire.make_header("get_params", have_version=-1, have_incarnation=-1))
    with (
        _raw(learner.server.port) as transitions,
        _raw(learner.publisher.snapshot_port) as snapshot,
        _raw(learner.publisher.port, zmq.SUB) as subscriber,
    ):
        i = 0
        while not stop.is_set():
            transitions.send_multipart(junk_message(rng, i))
            transitions.send(wire.pack_message("ping", actor="junk", session=int(rng.integers(1 << 62)), base=0, tx=0))
            transitions.send_multipart(_batch(wrong, "flood", int(rng.integers(1 << 62))))
            snapshot.send_multipart(junk_message(rng, i)[:1])
            snapshot.send(request)
            subscriber.setsockopt(zmq.SUBSCRIBE, f"junk-{i}".encode())
            sent[0] += 6
            i += 1
            time.sleep(0.002)


@pytest.mark.slow
def test_a_real_actor_trains_on_through_a_flood_on_every_port(learner):
    import threading

    from serl_gs.nodes.actor import ActorConfig, run_actor
    from tests.node_threads import ResultThread as _Thread
    from tests.node_threads import wait_for as _wait_for

    config = ActorConfig(
        env=ENV, transport=_actor_config(learner, "trainer", block_timeout_s=0.2), num_envs=2, random_steps=20,
        log_every_s=0.5,
    )  # fmt: skip
    stop_learner, stop_actor, stop_flood = threading.Event(), threading.Event(), threading.Event()
    sent = [0]
    before, updates = _rejected_by_reason(learner), learner.counters["updates"]
    threads = [_Thread(learner.run, stop_learner), _Thread(_flood, learner, stop_flood, sent)]
    actor = _Thread(run_actor, config, stop_actor)
    try:
        for t in threads:
            t.start()
        _wait_for(lambda: sent[0] > 3000, 60, "the flood to be under way", threads)
        actor.start()
        threads.append(actor)
        _wait_for(lambda: learner.counters["updates"] >= updates + 30, 120, "30 updates", threads)

        def acting_with_new_params() -> bool:
            trainer = learner.server.stats(current_param_version=0)["actors"].get("trainer", {})
            return trainer.get("param_version", -1) > updates

        _wait_for(acting_with_new_params, 60, "records acted with parameters published during the flood", threads)
        stop_actor.set()
        final = actor.outcome(60)
        assert learner.counters["records/trainer"] == final["records_sent"] > 0  # every transition counted
        assert final["param_version"] > updates  # its parameters advanced
    finally:
        for event in (stop_actor, stop_flood, stop_learner):
            event.set()
        for t in (actor, *threads):
            if t.is_alive() or t.ident is not None:
                t.join(60)
    grew = {k: v - before.get(k, 0) for k, v in _rejected_by_reason(learner).items()}
    assert grew["schema"] > 0 and grew["rate_limited"] > 0 and grew["bad_header"] > 0, grew
    assert grew.get("internal_error", 0) == 0
    assert learner.server.stats()["streams"] <= learner.config.transport.max_actors
