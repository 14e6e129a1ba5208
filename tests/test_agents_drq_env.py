"""DrQ on the real pixel vector env: its frames go through records and the replay into updates, and the
policy acts on its observations (CartpoleBalance, 32x32, the reference renderer)."""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.learning import init_training_state, make_update_fn
from serl_gs.agents.networks import make_inference_fn, make_networks, obs_spec_from_batch, policy_params
from serl_gs.data.records import RecordSpec, reset_records, step_records
from serl_gs.data.replay import ReplayBuffer, ReplayConfig


@pytest.mark.slow
def test_drq_trains_and_acts_on_pixel_observations_of_the_vector_env():
    import envs  # noqa: F401  (registers the serl_gs/ ids)

    vec = gym.make_vec(
        "serl_gs/CartpoleBalance-v0", num_envs=2, array_backend="numpy", episode_length=4,
        obs_mode="pixels", image_size=32, render_backend="reference",
    )  # fmt: skip
    obs, _ = vec.reset(seed=0)
    assert any(name.startswith("pixels/") for name in obs)
    config = AgentConfig(
        hidden_dims=(16,), critic_ensemble_size=2, batch_size=8, critic_actor_ratio=2,
        encoder=EncoderConfig(channels=(8, 8), latent_dim=8),
    )  # fmt: skip
    networks = make_networks(config, obs_spec_from_batch(obs), action_dim=1)
    assert networks.image_keys
    state = init_training_state(networks, jax.random.PRNGKey(0))
    update, policy = make_update_fn(networks), make_inference_fn(networks)
    first = reset_records(obs, action_dim=1)
    replay = ReplayBuffer(RecordSpec.from_records(first), ReplayConfig(capacity=64), log=lambda m: None)
    replay.insert(0, first)
    key = jax.random.PRNGKey(1)
    encoder_before = state.params["encoder"]
    for _ in range(6):  # crosses an episode end (4 steps) with its autoreset
        key, act_key, sample_key = jax.random.split(key, 3)
        action = np.asarray(policy(policy_params(state.params), obs, act_key, deterministic=False))
        assert action.shape == (2, 1) and np.all(np.abs(action) < 1)
        obs, reward, terminated, truncated, infos = vec.step(action)
        replay.insert(0, step_records(obs, action, reward, terminated, truncated, infos))
        state, metrics = update(state, replay.sample(sample_key, config.batch_size, config.critic_actor_ratio))
        assert all(np.isfinite(float(v)) for v in metrics.values())
    vec.close()
    assert replay.num_transitions == 12 and replay.unpaired == 0
    assert update._cache_size() == 1
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), encoder_before, state.params["encoder"])
    assert all(jax.tree.leaves(moved))
