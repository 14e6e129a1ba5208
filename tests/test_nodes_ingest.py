"""The learner's ingest thread (serl_gs.nodes.learner): batches are received, inserted, logged and acknowledged
while the loop updates and checkpoints on its own thread; a refused batch does not stop ingest."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import ActorTransportConfig, LearnerTransportConfig, TransitionClient
from serl_gs.transport.config import port_layout

ENV = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=20, physics="mujoco")
TINY_AGENT = AgentConfig(hidden_dims=(8,), critic_ensemble_size=2, batch_size=8, critic_actor_ratio=2, n_step=2)
NUM_ENVS = 4


def _records(learner: Learner, t: int) -> dict[str, np.ndarray]:
    """One step of NUM_ENVS envs (episodes of 10 steps); obs/state[:, 0] = t, so every record is identifiable."""
    spec = learner.obs_spec
    records = {f"obs/{k}": np.full((NUM_ENVS, *s.shape), t, np.float32) for k, s in spec.items()}
    return {
        "env_index": np.arange(NUM_ENVS, dtype=np.int32),
        **records,
        "action": np.zeros((NUM_ENVS, learner.action_dim), np.float32),
        "reward": np.ones(NUM_ENVS, np.float32),
        "terminated": np.zeros(NUM_ENVS, bool),
        "truncated": np.full(NUM_ENVS, t % 10 == 9),
        "is_first": np.full(NUM_ENVS, t % 10 == 0),
    }


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow  # ~15 s on a quiet 2-core machine, most of it building the tiny networks
def test_ingest_thread_stores_while_the_loop_updates_and_checkpoints(tmp_path):
    config = LearnerConfig(
        env=ENV, agent=TINY_AGENT, replay=ReplayConfig(capacity=2000),
        rate=RateLimiterConfig(utd=0.5, min_inserts=20, tolerance=4.0, auto=True),
        transport=LearnerTransportConfig(**port_layout(0)), run_dir=str(tmp_path / "run"),
        publish_every=4, checkpoint_every=8, log_every_s=3600.0,
    )  # fmt: skip
    learner = Learner(config)
    client = TransitionClient(ActorTransportConfig(actor_id="a0", transitions_port=learner.server.port,
                                                   poll_interval_s=0.01, block_timeout_s=1.0))  # fmt: skip
    bad = TransitionClient(ActorTransportConfig(actor_id="bad", transitions_port=learner.server.port,
                                                poll_interval_s=0.01))  # fmt: skip
    steps = 60
    try:
        learner.start_ingest()
        # The ingest thread alone takes and acknowledges batches: no step() runs while the first ones go out.
        for t in range(3):
            client.send(_records(learner, t), param_version=-1)
        assert client.flush(timeout=60)
        assert learner.counters["records/a0"] == 3 * NUM_ENVS
        # A batch of another schema is refused and counted; ingest goes on.
        wrong = {**_records(learner, 0), "obs/other": np.zeros((NUM_ENVS, 2), np.float32)}
        bad.send(wrong, param_version=-1)
        _wait_for(lambda: learner.server.stats()["rejected"]["schema"] == 1, 30, "the refusal")
        # Now actor and loop at once: the loop updates, publishes and checkpoints while batches are ingested.
        errors = []

        def send_the_rest() -> None:
            try:
                for t in range(3, steps):
                    while True:  # as the actor's adder: no credit while the learner owes updates, so wait again
                        try:
                            client.send(_records(learner, t), param_version=0)
                            break
                        except TimeoutError:
                            continue
            except Exception as e:  # reported by the loop below
                errors.append(e)

        sender = threading.Thread(target=send_the_rest)
        sender.start()
        deadline = time.monotonic() + 600  # the first fused call compiles meanwhile: minutes on a loaded machine
        while sender.is_alive() or learner.counters["records/a0"] < steps * NUM_ENVS:
            assert not errors, f"the sender failed: {errors[0]!r}"
            assert time.monotonic() < deadline, f"stored {learner.counters['records/a0']} records in 600 s"
            learner.step()
        sender.join()
        assert client.flush(timeout=30)
        learner.stop_ingest()
        assert learner.counters["updates"] >= 8  # checkpoints were due: written in the background
        # Every record stored exactly once, in its stream's order: each env's frames 0..steps-1 once each.
        assert learner.replay.total_inserted == learner.counters["records"] == steps * NUM_ENVS
        stored = np.sort(np.asarray(learner.replay._storage.fields["obs"]["state"])[: steps * NUM_ENVS, 0])
        np.testing.assert_array_equal(stored, np.repeat(np.arange(steps, dtype=np.float32), NUM_ENVS))
        # Transitions: every record but an episode's first; the rate limiter counted them all.
        assert learner.counters["transitions"] == steps * NUM_ENVS - 6 * NUM_ENVS
        assert learner.replay.num_transitions == learner.counters["transitions"]
        # The last save wrote a replay, its acknowledged positions and its counters that agree with each other.
        learner.save()  # after the background checkpoint in progress, if any
        assert learner.persistence.checkpoints.steps()[0] >= 8
        state = json.loads((tmp_path / "run" / "replay_state.json").read_text())
        assert state["total_inserted"] == steps * NUM_ENVS == state["counters"]["records"]
        assert {(p["actor_id"], p["next_seq"]) for p in state["positions"]} >= {("a0", steps)}
    finally:
        client.close()
        bad.close()
        learner.close()
