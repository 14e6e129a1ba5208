"""The learner and an actor in one process (two threads, ports picked by the OS), then a resumed learner."""

from __future__ import annotations

import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.actor import ActorConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import LearnerTransportConfig
from serl_gs.transport.config import port_layout
from tests.node_threads import actor_transport, learner_and_actor, wait_for

ENV = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=20, physics="mujoco")
TINY_AGENT = AgentConfig(hidden_dims=(16, 16), critic_ensemble_size=2, batch_size=16, critic_actor_ratio=1)


def _learner_config(run_dir) -> LearnerConfig:
    return LearnerConfig(
        env=ENV,
        agent=TINY_AGENT,
        replay=ReplayConfig(capacity=5000),
        rate=RateLimiterConfig(utd=0.5, min_inserts=40, tolerance=20.0, auto=False),
        transport=LearnerTransportConfig(**port_layout(0)),
        run_dir=str(run_dir),
        publish_every=5,
        checkpoint_every=25,
        log_every_s=0.5,
    )


@pytest.mark.slow  # ~20 s on a quiet 2-core machine, half of it compiling the networks' init op by op
def test_actor_and_learner_train_in_one_process_and_a_new_learner_resumes(tmp_path):
    learner = Learner(_learner_config(tmp_path / "run"))
    transport = actor_transport(learner)
    actor_config = ActorConfig(env=ENV, transport=transport, num_envs=2, random_steps=20, log_every_s=0.5)
    with learner_and_actor(learner, actor_config) as nodes:
        threads = nodes.threads
        wait_for(lambda: learner.counters["updates"] >= 30, 120, "30 updates", threads)

        def acted_with_published_params() -> bool:
            a0 = learner.server.stats(current_param_version=0)["actors"].get("a0", {})
            return a0.get("param_version", -1) > 0

        wait_for(acted_with_published_params, 60, "records acted with a published policy", threads)
        nodes.stop_actor.set()
        final = nodes.actor_thread.outcome(60)  # the actor flushed: the learner stored every record it sent
        assert final["param_version"] > 0 and final["records_sent"] > 0
        assert learner.counters["records/a0"] == final["records_sent"]
        nodes.stop_learner.set()
        counters = nodes.learner_thread.outcome(60)
    assert counters["updates"] >= 30 and counters["records/a0"] == final["records_sent"]
    assert learner.replay.total_inserted == counters["records"]

    resumed = Learner(_learner_config(tmp_path / "run"))
    try:
        assert dict(resumed.counters) == {k: v for k, v in counters.items() if k in resumed.counters}
        assert resumed.replay.total_inserted == counters["records"]
        assert resumed.replay.num_transitions == learner.replay.num_transitions
    finally:
        resumed.close()


@pytest.mark.slow  # the networks' init compiles op by op: ~10-20 s on a busy 2-core machine
def test_the_learner_stops_itself_at_the_eval_envs_return_of_a_task_without_success(tmp_path):
    """Cartpole reports returns and no `success`: with --stop_return and --stop_on eval the learner ends by
    itself once the mean of the actor's eval env's last 2 episodes reaches it, and the stop line says so; the
    exploring envs' episodes fill the training window, apart."""
    import dataclasses

    from learners.learner import _ended_by

    config = dataclasses.replace(_learner_config(tmp_path / "run"), stop_return=1.0, success_window=4,
                                 stop_on="eval", eval_window=2)  # fmt: skip
    learner = Learner(config)
    actor_config = ActorConfig(env=ENV, transport=actor_transport(learner), num_envs=3, eval_envs=1,
                               random_steps=1000, log_every_s=0.5)  # fmt: skip
    with learner_and_actor(learner, actor_config) as nodes:
        final = nodes.learner_thread.outcome(120)  # it ends by itself: no stop event is set
    assert final["stop_reason"] == "return"
    assert final["eval_return"] >= 1.0 and final["eval_return"] == pytest.approx(
        sum(list(learner.eval_return_window)) / 2
    )
    # Episodes are staggered and the eval env is one of three: exploring episodes end too, in their own window.
    assert len(learner.return_window) > 0 and final["training_success"] is None
    assert final["episodes_with_success"] == 0
    line = _ended_by(final, config)
    assert line.startswith("stopped: eval return over the last 2 eval-env episodes ")
    assert "reached --stop_return 1," in line, line
