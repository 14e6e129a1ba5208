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
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from tests.node_threads import learn_through_threads

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
    rate = RateLimiterConfig(utd=1 / NUM_ENVS, min_inserts=1_000, tolerance=20.0, auto=False)
    returns, counters, learner = learn_through_threads(
        tmp_path / "run",
        ENV,
        AGENT,
        rate,
        num_envs=NUM_ENVS,
        random_steps=1_000,
        max_updates=BUDGET,
        score=evaluate,
        threshold=THRESHOLD,
        every=EVAL_EVERY,
        log_every_s=5.0,
    )

    print(f"deterministic returns every {EVAL_EVERY} updates: {returns}; learner: {counters['updates']} updates")
    assert learner.replay.unpaired == 0  # every non-first record found its predecessor
    assert returns[-1] >= THRESHOLD, f"no return >= {THRESHOLD} within {BUDGET} updates: {returns}"
    assert returns[-1] > returns[0] + 40
