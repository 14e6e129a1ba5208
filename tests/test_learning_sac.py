"""SAC from state learns CartpoleBalance-v0: the whole learner path (vector env -> records -> replay ->
sample -> update -> inference) on CPU, until a deterministic-policy return threshold or the budget runs out.

200-step episodes; reward per step in [0, 1]. For reference: the untrained policy scores ~100-130, zero
actions ~143, uniform random actions ~115; the threshold, 185, needs the pole up and the cart centred nearly
all the time. Measured here: this test crossed it at iteration 1,750 (38 s on a 2-core machine shared with
other work); the budget is 4,000.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.agents.learning import init_training_state, make_update_fn
from serl_gs.agents.networks import make_inference_fn, make_networks, obs_spec_from_batch, policy_params
from serl_gs.data.records import RecordSpec, reset_records, step_records
from serl_gs.data.replay import ReplayBuffer, ReplayConfig

NUM_ENVS = 16
EPISODE = 200
THRESHOLD = 185.0
BUDGET = 4_000  # iterations: one env step of every env + one update (4 critic steps, 1 actor step)
RANDOM_STEPS = 1_000 // NUM_ENVS
EVAL_EVERY = 250


def evaluate(vec, policy, params) -> float:
    """Mean return of the deterministic policy over one episode of every env, from fixed start states."""
    obs, _ = vec.reset(seed=123)
    total = np.zeros(NUM_ENVS)
    for _ in range(EPISODE):
        obs, reward, *_ = vec.step(np.asarray(policy(params, obs, jax.random.PRNGKey(0), deterministic=True)))
        total += reward
    return float(total.mean())


@pytest.mark.slow
def test_sac_learns_cartpole_balance_from_state():
    import envs  # noqa: F401  (registers the serl_gs/ ids)

    config = AgentConfig(
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
    make = lambda: gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=NUM_ENVS, array_backend="numpy", episode_length=EPISODE
    )
    vec, eval_vec = make(), make()
    obs, _ = vec.reset(seed=0)
    first = reset_records(obs, action_dim=1)
    replay = ReplayBuffer(RecordSpec.from_records(first), ReplayConfig(capacity=50_000), log=lambda m: None)
    replay.insert("actor-0", first)

    networks = make_networks(config, obs_spec_from_batch(obs), action_dim=1)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    update, policy = make_update_fn(networks), make_inference_fn(networks)
    returns = [evaluate(eval_vec, policy, policy_params(state.params))]
    rng, key = np.random.default_rng(0), jax.random.PRNGKey(1)

    for iteration in range(1, BUDGET + 1):
        key, act_key, sample_key = jax.random.split(key, 3)
        if iteration <= RANDOM_STEPS:
            action = rng.uniform(-1, 1, (NUM_ENVS, 1)).astype(np.float32)
        else:
            action = np.asarray(policy(policy_params(state.params), obs, act_key, deterministic=False))
        obs, reward, terminated, truncated, infos = vec.step(action)
        replay.insert("actor-0", step_records(obs, action, reward, terminated, truncated, infos))
        if iteration > RANDOM_STEPS:
            batch = replay.sample(sample_key, config.batch_size, config.critic_actor_ratio)
            state, metrics = update(state, batch)
        if iteration % EVAL_EVERY == 0:
            returns.append(evaluate(eval_vec, policy, policy_params(state.params)))
            if returns[-1] >= THRESHOLD:
                break

    print(f"deterministic returns every {EVAL_EVERY} iterations: {returns}")
    assert update._cache_size() == 1
    assert replay.unpaired == 0  # every non-first record found its predecessor
    assert returns[-1] >= THRESHOLD, f"no return >= {THRESHOLD} within {BUDGET} iterations: {returns}"
    assert returns[-1] > returns[0] + 40
