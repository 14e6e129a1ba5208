"""Colored exploration noise: standard normal per step, correlated over time for beta > 0, fresh per episode;
the policy acts with the noise it is given."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.agents.exploration import ColoredNoise, powerlaw_noise
from serl_gs.agents.networks import make_inference_fn, make_networks, policy_params


def lag1(x: np.ndarray) -> float:
    """Mean lag-1 autocorrelation of sequences along the last axis."""
    return float(np.mean([np.corrcoef(s[:-1], s[1:])[0, 1] for s in x.reshape(-1, x.shape[-1])]))


def test_powerlaw_noise_is_unit_variance_and_correlated_by_its_colour():
    rng = np.random.default_rng(0)
    white, pink, red = (powerlaw_noise(rng, beta, (500,), 100) for beta in (0.0, 1.0, 2.0))
    for x in (white, pink, red):
        np.testing.assert_allclose(x.std(axis=-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(x.mean(axis=-1), 0.0, atol=1e-5)
    assert abs(lag1(white)) < 0.05
    assert 0.4 < lag1(pink) < lag1(red)
    with pytest.raises(ValueError, match="beta"):
        powerlaw_noise(rng, -1.0, (2,), 10)


def test_colored_noise_walks_each_env_through_its_sequence_and_renews_ended_ones():
    noise = ColoredNoise(num_envs=3, action_dim=2, steps=8, beta=1.0, seed=0)
    first = np.stack([noise.next() for _ in range(4)])  # [T, N, A]
    noise.reset(np.array([False, True, False]))
    after = noise.next()
    # Env 1 starts a fresh sequence; envs 0 and 2 carry on with step 4 of theirs.
    assert noise._t.tolist() == [5, 1, 5]
    assert not np.allclose(after[1], first[0, 1])
    seq = noise._noise
    np.testing.assert_array_equal(after[0], seq[0, :, 4])
    for _ in range(10):  # an episode longer than the sequence wraps into a fresh one
        noise.next()
    assert (noise._t <= 8).all()


def test_policy_acts_with_the_given_noise():
    spec = {"state": jax.ShapeDtypeStruct((3,), jnp.float32)}
    networks = make_networks(AgentConfig(hidden_dims=(8,), critic_ensemble_size=2), spec, action_dim=2)
    params = policy_params(networks.init(jax.random.PRNGKey(0)))
    policy = make_inference_fn(networks)
    obs = {"state": jnp.ones((4, 3))}
    key = jax.random.PRNGKey(1)
    zero = policy(params, obs, key, False, jnp.zeros((4, 2)))
    np.testing.assert_allclose(zero, policy(params, obs, key, True), atol=1e-6)  # eps = 0: the mean action
    eps = jax.random.normal(key, (4, 2))
    features = networks.encoder.apply({"params": params["encoder"]}, obs)
    mean, std = networks.actor.apply({"params": params["actor"]}, features)
    np.testing.assert_allclose(policy(params, obs, key, False, eps), jnp.tanh(mean + std * eps), atol=1e-6)
