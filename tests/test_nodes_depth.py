"""Depth and segmentation through the nodes (--depth / --segmentation): an actor sends them in its records, the
learner stores them once per frame in their compact dtypes and updates an RGB-D encoder on them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.networks import make_networks
from serl_gs.data.augment import shift_pixels
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.actor import ActorConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import LearnerTransportConfig
from serl_gs.transport.config import port_layout
from tests.node_threads import actor_transport, learner_and_actor, wait_for

ENV = EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=16, episode_length=40, physics="mujoco",
              render_backend="reference", frame_stack=2, depth=True, segmentation=True)  # fmt: skip
TINY = AgentConfig(hidden_dims=(16, 16), critic_ensemble_size=2, batch_size=8, critic_actor_ratio=1,
                   encoder=EncoderConfig(channels=(4,), latent_dim=8))  # fmt: skip


def test_the_encoder_takes_rgb_d_and_augmentation_shifts_a_cameras_images_alike():
    spec = ENV.policy_obs_spec(ENV.observation_spec()[0])
    assert spec["depth/fixed"].shape == (16, 16, 2) and spec["depth/fixed"].dtype == np.uint16
    assert spec["segmentation/fixed"].shape == (16, 16, 2) and spec["pixels/fixed"].shape == (16, 16, 6)
    nets = make_networks(TINY, spec, 1)
    obs = {k: jnp.zeros((3, *s.shape), s.dtype) for k, s in spec.items()}
    params = nets.encoder.init(jax.random.PRNGKey(0), obs)["params"]
    assert params["conv"]["Conv_0"]["kernel"].shape == (3, 3, 6 + 2, 4)  # 2 RGB frames + 2 depth frames
    assert sorted(spec) == ["depth/fixed", "pixels/fixed", "segmentation/fixed"]  # pixels only: no state
    assert nets.encoder.apply({"params": params}, obs).shape == (3, 8)
    # Depth changes the features (it is an input), segmentation does not (stored only).
    deeper = {**obs, "depth/fixed": obs["depth/fixed"] + 2000}
    labelled = {**obs, "segmentation/fixed": obs["segmentation/fixed"] + 2}
    base = nets.encoder.apply({"params": params}, obs)
    assert not np.allclose(nets.encoder.apply({"params": params}, deeper), base)
    np.testing.assert_array_equal(nets.encoder.apply({"params": params}, labelled), base)
    with pytest.raises(ValueError, match="needs its camera's RGB 'pixels/fixed'"):
        make_networks(TINY, {"depth/fixed": spec["depth/fixed"]}, 1)
    # One camera's RGB, depth and labels move together: a gradient image shifted alike in all three.
    ramp = jnp.broadcast_to(jnp.arange(16)[None, :, None, None], (4, 16, 16, 1))
    batch = {"pixels/fixed": jnp.repeat(ramp, 3, -1).astype(jnp.uint8), "depth/fixed": ramp.astype(jnp.uint16),
             "segmentation/fixed": ramp.astype(jnp.uint8)}  # fmt: skip
    out = shift_pixels(batch, jax.random.PRNGKey(1), pad=3)
    np.testing.assert_array_equal(out["pixels/fixed"][..., :1], out["depth/fixed"])
    np.testing.assert_array_equal(out["segmentation/fixed"], out["depth/fixed"])
    assert not np.array_equal(out["depth/fixed"], batch["depth/fixed"])


@pytest.mark.slow  # ~15 s on a quiet 2-core machine: compiling the pixel networks and the update
def test_an_actor_with_depth_sends_records_the_learner_stores_compactly_and_updates_on(tmp_path):
    learner = Learner(
        LearnerConfig(env=ENV, agent=TINY, replay=ReplayConfig(capacity=400, frame_stack=2),
                      rate=RateLimiterConfig(utd=0.5, min_inserts=12, tolerance=20.0),
                      transport=LearnerTransportConfig(**port_layout(0)), run_dir=str(tmp_path / "run"),
                      publish_every=2, checkpoint_every=1000, log_every_s=0.5)  # fmt: skip
    )
    actor = ActorConfig(env=ENV, transport=actor_transport(learner), num_envs=2, random_steps=12, log_every_s=0.5)
    with learner_and_actor(learner, actor) as nodes:
        wait_for(lambda: learner.counters["updates"] >= 3, 900, "3 updates on RGB-D", nodes.threads)
        nodes.stop_actor.set()
        nodes.actor_thread.outcome(60)
        nodes.stop_learner.set()
        counters = nodes.learner_thread.outcome(60)
    assert counters["updates"] >= 3
    stored = dict((name, (tuple(shape), np.dtype(dtype))) for name, shape, dtype in learner.replay.spec.obs)
    # One frame per record (the stacks are rebuilt when sampled), in the compact dtypes.
    assert stored["depth/fixed"] == ((16, 16, 1), np.dtype(np.uint16))
    assert stored["segmentation/fixed"] == ((16, 16, 1), np.dtype(np.uint8))
    n = learner.replay.total_inserted
    fields = jax.tree.map(np.asarray, learner.replay._storage.fields["obs"])
    depth, labels = fields["depth/fixed"][:n], fields["segmentation/fixed"][:n]
    assert 3000 < np.median(depth[depth > 0]) < 6000  # millimetres: the camera sits 4 m from the cart
    assert set(np.unique(labels)) <= {0, 2} and (labels == 2).any()  # background and the cart-pole (robot)
