"""SAC from state learns CartpoleBalance-v0 through the real nodes: a `Learner` and `run_actor` as two threads of
one process (as tests/test_nodes_learner.py runs them), on OS-picked ports: vector env -> adder -> transport ->
replay under the rate limiter -> fused updates -> published parameters -> the actor's policy. The test thread
evaluates the learner's current policy every EVAL_EVERY updates until a deterministic-policy return threshold or
the update budget.

200-step episodes; reward per step in [0, 1]. For reference: the untrained policy scores ~100-130, zero
actions ~143, uniform random actions ~115; the threshold, 185, needs the pole up and the cart centred nearly
all the time. The actor feeds 16 envs and the learner makes one update (4 critic steps, 1 actor step) per 16
transitions, as the private loop this test replaced did (one env step of every env, then one update).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.agents.networks import make_inference_fn
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.actor import ActorConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import LearnerTransportConfig
from serl_gs.transport.config import port_layout
from tests.node_threads import actor_transport, learn_until

NUM_ENVS = 16
EPISODE = 200
THRESHOLD = 185.0
BUDGET = 4_000  # updates
EVAL_EVERY = 250  # updates
ENV = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=EPISODE, physics="mujoco")
AGENT = AgentConfig(
    hidden_dims=(128, 128),
    critic_ensemble_size=10,
    critic_subsample_size=2,
    critic_actor_ratio=4,
    batch_size=128,
    discount=0.97,
    actor_lr=1e-3,
    critic_lr=1e-3,
    temperature_lr=1e-3,
)


def evaluate(vec, policy, params) -> float:
    """Mean return of the deterministic policy over one episode of every env, from fixed start states."""
    obs, _ = vec.reset(seed=123)
    total = np.zeros(NUM_ENVS)
    for _ in range(EPISODE):
        obs, reward, *_ = vec.step(np.asarray(policy(params, obs, jax.random.PRNGKey(0), deterministic=True)))
        total += reward
    return float(total.mean())


@pytest.mark.slow
def test_sac_learns_cartpole_balance_from_state_through_the_nodes(tmp_path):
    learner = Learner(
        LearnerConfig(
            env=ENV,
            agent=AGENT,
            replay=ReplayConfig(capacity=50_000),
            rate=RateLimiterConfig(utd=1 / NUM_ENVS, min_inserts=1_000, tolerance=20.0, auto=False),
            transport=LearnerTransportConfig(**port_layout(0)),
            run_dir=str(tmp_path / "run"),
            publish_every=10,
            checkpoint_every=100_000,  # no checkpoint while learning: this test is about the loop
            max_updates=BUDGET,
            log_every_s=5.0,
        )
    )
    transport = actor_transport(learner)
    actor = ActorConfig(env=ENV, transport=transport, num_envs=NUM_ENVS, random_steps=1_000, log_every_s=5.0)
    eval_vec = ENV.make_vec(NUM_ENVS, seed=1)
    policy = make_inference_fn(learner.networks)
    try:
        returns, counters = learn_until(
            learner, actor, lambda params: evaluate(eval_vec, policy, params), THRESHOLD, EVAL_EVERY
        )
    finally:
        eval_vec.close()

    print(f"deterministic returns every {EVAL_EVERY} updates: {returns}; learner: {counters['updates']} updates")
    assert learner.replay.unpaired == 0  # every non-first record found its predecessor
    assert returns[-1] >= THRESHOLD, f"no return >= {THRESHOLD} within {BUDGET} updates: {returns}"
    assert returns[-1] > returns[0] + 40
