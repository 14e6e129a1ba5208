"""DrQ at 32x32 overfits a fixed batch through its encoder: gradients reach the conv net, the loss falls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.learning import init_training_state, make_update_fn
from serl_gs.agents.networks import make_networks
from serl_gs.data.batch import Batch


@pytest.mark.slow
def test_drq_critic_overfits_a_fixed_pixel_batch():
    rng = np.random.default_rng(0)
    batch_size = 32
    # Pixels are the only observation, so the critic can only fit the rewards through the encoder.
    # Each image is a flat random colour plus noise; reward = (red - blue) / 255, which random shifts keep.
    colours = rng.integers(0, 256, (batch_size, 1, 1, 3))
    images = np.clip(colours + rng.integers(-8, 9, (batch_size, 32, 32, 3)), 0, 255).astype(np.uint8)
    reward = ((colours[:, 0, 0, 0] - colours[:, 0, 0, 2]) / 255.0).astype(np.float32)
    obs = {"pixels/cam": jnp.asarray(images)}
    batch = Batch(
        obs=obs,
        action=jnp.zeros((batch_size, 1)),
        reward=jnp.asarray(reward),
        terminated=jnp.zeros((batch_size,), bool),
        next_obs=obs,
    )
    batch = jax.tree.map(lambda x: x[None], batch)  # [ratio=1, B, ...]

    config = AgentConfig(
        hidden_dims=(64, 64),
        critic_ensemble_size=2,
        critic_subsample_size=None,
        discount=0.0,  # target = reward: a pure regression, so the fall in loss is the fit alone
        critic_lr=1e-3,
        batch_size=batch_size,
        critic_actor_ratio=1,
        encoder=EncoderConfig(channels=(16, 16), latent_dim=16),
    )
    networks = make_networks(config, {"pixels/cam": jax.ShapeDtypeStruct((32, 32, 3), jnp.uint8)}, 1)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    initial_encoder = state.params["encoder"]
    update = make_update_fn(networks)
    losses = []
    for _ in range(150):
        state, metrics = update(state, batch)
        losses.append(float(metrics["critic_loss"]))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"critic loss {first:.5f} -> {last:.5f}")
    assert last < first / 10, f"critic loss fell from {first:.4f} to {last:.4f}, less than 10x"
    conv_moved = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()), initial_encoder["conv"], state.params["encoder"]["conv"]
    )
    assert min(jax.tree.leaves(conv_moved)) > 1e-4  # every conv layer was trained
