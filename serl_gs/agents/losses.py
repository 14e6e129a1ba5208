"""SAC / DrQ losses as pure functions of parameters and a (possibly augmented) minibatch.

Critic: mean over the ensemble and batch of (Q_i(s, a) - y)^2 with
    y = r + discount * (1 - terminated) * min_{i in random subset} Q^target_i(s', a'),   a' ~ pi(s')
(n-step batches carry r = the discounted n-step reward sum and their own bootstrap factor in `batch.discount`)
(REDQ; `backup_entropy` adds - discount * (1 - terminated) * alpha * log pi(a'|s')). Truncation is not
termination: truncated transitions bootstrap.
Actor: mean(alpha * log pi(a|s) - mean_i Q_i(s, a)),  a ~ pi(s), features through a stop-gradient.
Temperature: alpha * (entropy - target_entropy), entropy = -mean log pi over the batch's online rows (all rows
when it holds no demo rows); minimising it raises alpha when the policy's entropy falls below the target (alpha
as a Lagrange multiplier). Why not the demo rows (RLPD): on a scripted expert's states the actor learns the
expert's near-deterministic actions, so its entropy there sits below the target by construction; counted in, it
drove the temperature up (0.15 against 0.075 without demos, benchmarks/results/rlpd-panda-state-50k-cpu2-
2026-12-07c.jsonl) and with it the exploration noise on the states the policy actually visits.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from serl_gs.agents.distributions import sample_tanh_gaussian
from serl_gs.agents.networks import AgentNetworks, Params, temperature_value
from serl_gs.data.batch import Batch

OBS_FEATURES = "obs_features"  # critic_loss's aux entry holding the encoded obs [B, F] (not a metric)


def redq_min(
    qs: jax.Array,  # [E, B]
    key: jax.Array,
    subset_size: int | None,
) -> jax.Array:  # [B]
    """Min over a random subset (without replacement) of ensemble members, the same subset for the batch."""
    if subset_size is None or subset_size == qs.shape[0]:
        return qs.min(axis=0)
    members = jax.random.choice(key, qs.shape[0], (subset_size,), replace=False)
    return qs[members].min(axis=0)


def sample_actions(
    networks: AgentNetworks,
    actor_params: Params,
    features: jax.Array,  # [B, F]
    key: jax.Array,  # used as-is for the Gaussian noise (see sample_tanh_gaussian)
) -> tuple[jax.Array, jax.Array]:  # actions [B, A], log_probs [B]
    mean, std = networks.actor.apply({"params": actor_params}, features)
    return sample_tanh_gaussian(mean, std, key)


def critic_loss(
    networks: AgentNetworks,
    critic_params: Mapping[str, Params],  # {"encoder", "critic"}: what this loss trains
    target_params: Mapping[str, Params],  # {"encoder", "critic"}: Polyak averages
    actor_params: Params,
    temperature_params: jax.Array,
    batch: Batch,  # [B]
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    config = networks.config
    next_action_key, subset_key = jax.random.split(key)
    next_features = jax.lax.stop_gradient(networks.encode(critic_params["encoder"], batch.next_obs))
    next_actions, next_log_probs = sample_actions(networks, actor_params, next_features, next_action_key)
    target_features = networks.encode(target_params["encoder"], batch.next_obs)
    target_qs = networks.critic.apply({"params": target_params["critic"]}, target_features, next_actions)
    next_q = redq_min(target_qs, subset_key, config.critic_subsample_size)
    if batch.discount is None:  # 1-step transitions
        bootstrap = config.discount * (1.0 - batch.terminated.astype(jnp.float32))
    else:  # n-step: discount^m * (1 - terminated) from the replay (data.sampling)
        bootstrap = batch.discount
    if config.backup_entropy:
        next_q = next_q - temperature_value(temperature_params) * next_log_probs
    target = jax.lax.stop_gradient(batch.reward + bootstrap * next_q)

    features = networks.encode(critic_params["encoder"], batch.obs)
    qs = networks.critic.apply({"params": critic_params["critic"]}, features, batch.action)  # [E, B]
    loss = jnp.mean((qs - target[None]) ** 2)
    info = {"critic_loss": loss, "q": qs.mean(), "target_q": target.mean()}
    # The obs features before this step's gradient: the actor step may reuse them (AgentConfig.actor_features).
    return loss, {**info, OBS_FEATURES: jax.lax.stop_gradient(features)}


def actor_loss(
    networks: AgentNetworks,
    actor_params: Params,
    encoder_params: Params,
    critic_params: Params,
    temperature_params: jax.Array,
    obs: Mapping[str, jax.Array],  # [B, ...]
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = networks.encode(encoder_params, obs)
    return actor_loss_on_features(networks, actor_params, critic_params, temperature_params, features, key)


def actor_loss_on_features(
    networks: AgentNetworks,
    actor_params: Params,
    critic_params: Params,
    temperature_params: jax.Array,
    features: jax.Array,  # [B, F] encoded observations
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = jax.lax.stop_gradient(features)  # the actor does not train the encoder
    actions, log_probs = sample_actions(networks, actor_params, features, key)
    q = networks.critic.apply({"params": critic_params}, features, actions).mean(axis=0)
    alpha = jax.lax.stop_gradient(temperature_value(temperature_params))
    loss = jnp.mean(alpha * log_probs - q)
    return loss, {"actor_loss": loss, "log_probs": log_probs, "entropy": -log_probs.mean()}


def temperature_loss(
    temperature_params: jax.Array,
    log_probs: jax.Array,  # [B] from the actor step, not differentiated
    target_entropy: float,
    demo: jax.Array | None = None,  # [B] bool: rows from the demo buffer, left out of the entropy; None: none
) -> tuple[jax.Array, dict[str, jax.Array]]:
    alpha = temperature_value(temperature_params)
    log_probs = jax.lax.stop_gradient(log_probs)
    if demo is None:
        entropy = -jnp.mean(log_probs)
    else:  # mixed_sample refuses a batch without online rows, so the count is >= 1
        online = (~demo).astype(log_probs.dtype)
        entropy = -jnp.sum(log_probs * online) / jnp.maximum(online.sum(), 1.0)
    loss = alpha * (entropy - target_entropy)
    return loss, {"temperature_loss": loss, "temperature": alpha, "temperature_entropy": entropy}
