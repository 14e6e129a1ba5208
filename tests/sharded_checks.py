"""Checks of the data-parallel learner on virtual CPU devices, run by tests/test_agents_sharding.py in a subprocess
(XLA_FLAGS=--xla_force_host_platform_device_count=N must be set before JAX starts, so not in pytest's process).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.sharded_checks update_equivalence
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.sharded_checks learner_node RUN_DIR
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np


def update_equivalence() -> None:
    """One sharded update (4 devices) equals the single-device update on the same batches: SAC and DrQ."""
    from serl_gs.agents import sharding
    from serl_gs.agents.config import AgentConfig, EncoderConfig
    from serl_gs.agents.learning import init_training_state, make_update_many_fn
    from serl_gs.agents.networks import make_networks
    from tests.test_agents_update import STATE_SPEC, random_batch

    assert len(jax.devices()) == 4, jax.devices()
    pixel_spec = {"pixels/front": jax.ShapeDtypeStruct((8, 8, 3), jnp.uint8), **STATE_SPEC}
    mesh = sharding.data_mesh(jax.devices())
    for spec in (STATE_SPEC, pixel_spec):
        config = AgentConfig(hidden_dims=(16,), critic_ensemble_size=3, batch_size=8, critic_actor_ratio=2,
                             image_augmentation_pad=1, encoder=EncoderConfig(channels=(4,), latent_dim=8))  # fmt: skip
        networks = make_networks(config, spec, action_dim=2)
        state = init_training_state(networks, jax.random.PRNGKey(0))
        batches = random_batch(jax.random.PRNGKey(1), spec, 2, (1, 2, 8))  # [K=1, U=2, B=8]
        expected, expected_metrics = make_update_many_fn(networks)(state, batches)
        update = sharding.make_sharded_update_many_fn(networks, mesh)
        shared = sharding.shard_batches(batches, mesh)
        assert shared.reward.sharding.shard_shape(shared.reward.shape) == (1, 2, 2)  # 2 transitions per device
        got, metrics = update(sharding.replicate(state, mesh), shared)
        assert got.params["critic"] is not None and len(jax.tree.leaves(got.params)[0].sharding.device_set) == 4
        close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        jax.tree.map(close, got.params, expected.params)
        jax.tree.map(close, got.target_params, expected.target_params)
        jax.tree.map(close, metrics, expected_metrics)
        assert not np.allclose(np.asarray(jax.tree.leaves(got.params["critic"])[0]),
                               np.asarray(jax.tree.leaves(state.params["critic"])[0]))  # it did update  # fmt: skip
    try:
        sharding.make_sharded_update_many_fn(make_networks(AgentConfig(batch_size=6), STATE_SPEC, 2), mesh)
    except ValueError as e:
        assert "batch_size 6" in str(e), e
    else:
        raise AssertionError("a batch of 6 over 4 devices was accepted")
    try:
        sharding.learner_devices(5)
    except ValueError as e:
        assert "learner_devices=5" in str(e), e
    else:
        raise AssertionError("5 devices of 4 were accepted")
    print("update_equivalence ok", flush=True)


def learner_node(run_dir: str) -> None:
    """The learner node on 2 devices trains beside a real actor (one process, two threads, OS-picked ports)."""
    import dataclasses

    from serl_gs.nodes.actor import ActorConfig
    from serl_gs.nodes.learner import Learner
    from tests.node_threads import actor_transport, learner_and_actor, wait_for
    from tests.test_nodes_learner import _learner_config

    assert len(jax.devices()) == 2, jax.devices()
    learner = Learner(dataclasses.replace(_learner_config(run_dir), learner_devices=2))
    assert learner.mesh is not None and learner.mesh.devices.size == 2
    transport = actor_transport(learner)
    actor = ActorConfig(env=learner.config.env, transport=transport, num_envs=2, random_steps=20, log_every_s=0.5)
    with learner_and_actor(learner, actor) as nodes:
        wait_for(lambda: learner.counters["updates"] >= 10, 300, "10 updates", nodes.threads)
        nodes.stop_actor.set()
        nodes.actor_thread.outcome(60)
        nodes.stop_learner.set()
        counters = nodes.learner_thread.outcome(120)  # saves a checkpoint of the replicated state on the way out
    assert counters["updates"] >= 10
    leaf = jax.tree.leaves(learner.state.params)[0]
    assert len(leaf.sharding.device_set) == 2 and np.isfinite(np.asarray(leaf)).all()
    assert np.isfinite(float(learner._metrics["critic_loss"]))
    print("learner_node ok", counters["updates"], flush=True)


if __name__ == "__main__":
    {"update_equivalence": update_equivalence, "learner_node": learner_node}[sys.argv[1]](*sys.argv[2:])
