"""Hostile and mistaken input at a live learner: nothing a peer sends stops it or locks out a real actor.

One learner (cartpole, tiny networks) serves the whole file. Each test sends what a wrong or hostile peer
would, on the transitions, parameter and snapshot ports, and checks that the learner refused it under a
named counter, said why, and still serves an honest actor.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.data.records import reset_records
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import ActorTransportConfig, BatchRejected, LearnerTransportConfig, TransitionClient
from serl_gs.transport.config import port_layout

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
        rate=RateLimiterConfig(utd=0.5, min_inserts=40, tolerance=20.0),
        transport=LearnerTransportConfig(**port_layout(0), reject_log_interval_s=60.0, **FAST),
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


def test_records_of_another_task_are_refused_at_the_first_batch_naming_both_schemas(learner, capsys):
    detail = _refused_by_the_learner(learner, "panda", _records(OTHER_TASK), "schema", times=3)
    # Both schemas, so the user sees at once what differs.
    assert "obs/state: float32[10]" in detail and "action: float32[4]" in detail  # the actor's
    assert "obs/state: float32[5]" in detail and "action: float32[1]" in detail  # the learner's
    assert "serl_gs/CartpoleBalance-v0" in detail
    logged = [line for line in capsys.readouterr().out.splitlines() if "refused actor 'panda'" in line]
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
    assert learner.server.stats()["actors"].get("wrong-task", {}).get("batches", 0) == 0  # it sent nothing
