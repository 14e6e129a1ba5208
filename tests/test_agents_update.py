"""The update: compiled once, Polyak after critic steps, encoder trained by the critic only; inference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.agents import losses
from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.learning import (
    init_training_state,
    make_learner_step_fn,
    make_update_fn,
    make_update_many_fn,
)
from serl_gs.agents.networks import make_inference_fn, make_networks, obs_spec_from_batch, policy_params
from serl_gs.agents.pretrained import load_encoder_params, save_encoder_params
from serl_gs.data.augment import random_shift, shift_pixels
from serl_gs.data.batch import Batch

TINY = dict(hidden_dims=(16,), critic_ensemble_size=3, batch_size=4)
TINY_ENCODER = EncoderConfig(channels=(4, 4), latent_dim=8)


def random_batch(key, obs_spec, action_dim, leading):
    keys = iter(jax.random.split(key, 16))
    make = lambda s: (
        jax.random.randint(next(keys), (*leading, *s.shape), 0, 256).astype(jnp.uint8)
        if s.dtype == jnp.uint8
        else jax.random.normal(next(keys), (*leading, *s.shape))
    )
    return Batch(
        obs={name: make(s) for name, s in obs_spec.items()},
        action=jax.random.uniform(next(keys), (*leading, action_dim), minval=-1, maxval=1),
        reward=jax.random.normal(next(keys), leading),
        terminated=jax.random.bernoulli(next(keys), 0.2, leading),
        next_obs={name: make(s) for name, s in obs_spec.items()},
    )


STATE_SPEC = {"state": jax.ShapeDtypeStruct((3,), jnp.float32)}
PIXEL_SPEC = {
    "pixels/front": jax.ShapeDtypeStruct((16, 16, 3), jnp.uint8),
    "pixels/wrist": jax.ShapeDtypeStruct((16, 16, 3), jnp.uint8),
    "state": jax.ShapeDtypeStruct((3,), jnp.float32),
}


@pytest.mark.slow
@pytest.mark.parametrize("obs_spec", [STATE_SPEC, PIXEL_SPEC], ids=["sac", "drq"])
def test_update_compiles_once_and_counts_steps(obs_spec):
    config = AgentConfig(**TINY, encoder=TINY_ENCODER, critic_actor_ratio=2)
    networks = make_networks(config, obs_spec, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    update = make_update_fn(networks)
    for i in range(4):
        # Committed to the device like the replay's batches: jit caches committed arguments apart.
        batch = jax.device_put(random_batch(jax.random.PRNGKey(i), obs_spec, 2, (2, 4)), jax.devices()[0])
        state, metrics = update(state, batch)
    assert update._cache_size() == 1  # four calls, one trace
    assert int(state.step) == 4
    expected = {"critic_loss", "q", "target_q", "actor_loss", "entropy", "temperature_loss", "temperature"}
    expected |= {"temperature_entropy"}
    assert set(metrics) == expected
    assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.slow
def test_scanned_and_unrolled_critic_steps_compute_the_same_update():
    batch = jax.device_put(random_batch(jax.random.PRNGKey(1), STATE_SPEC, 2, (3, 4)), jax.devices()[0])
    results = []
    for unroll in ("never", "always"):
        networks = make_networks(AgentConfig(**TINY, critic_actor_ratio=3, scan_unroll=unroll), STATE_SPEC, 2)
        state = init_training_state(networks, jax.random.PRNGKey(0))
        results.append(make_update_fn(networks)(state, batch))
    (scanned, scanned_metrics), (unrolled, unrolled_metrics) = results
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, scanned.params, unrolled.params)
    jax.tree.map(close, scanned.target_params, unrolled.target_params)
    jax.tree.map(close, scanned_metrics, unrolled_metrics)


@pytest.mark.parametrize("obs_spec", [STATE_SPEC, pytest.param(PIXEL_SPEC, marks=pytest.mark.slow)], ids=["sac", "drq"])
def test_k_fused_updates_equal_k_sequential_updates_on_the_same_batches(obs_spec):
    config = AgentConfig(**TINY, encoder=TINY_ENCODER, critic_actor_ratio=2)
    networks = make_networks(config, obs_spec, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    batches = jax.device_put(random_batch(jax.random.PRNGKey(1), obs_spec, 2, (3, 2, 4)), jax.devices()[0])
    fused, fused_metrics = make_update_many_fn(networks)(state, batches)
    update, sequential, infos = make_update_fn(networks), state, []
    for i in range(3):
        sequential, info = update(sequential, jax.tree.map(lambda x, i=i: x[i], batches))
        infos.append(info)
    assert int(fused.step) == int(sequential.step) == 3
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    jax.tree.map(close, fused.params, sequential.params)
    jax.tree.map(close, fused.target_params, sequential.target_params)
    jax.tree.map(close, fused.critic_opt_state, sequential.critic_opt_state)
    np.testing.assert_array_equal(fused.rng, sequential.rng)  # the same randomness, in the same order
    jax.tree.map(close, fused_metrics, jax.tree.map(lambda *xs: np.mean(xs), *infos))


@pytest.mark.slow
def test_learner_step_samples_and_updates_in_one_call():
    from serl_gs.data.records import RecordSpec
    from serl_gs.data.replay import ReplayBuffer, ReplayConfig
    from serl_gs.data.sampling import sample_batch

    config = AgentConfig(**TINY, critic_actor_ratio=2, n_step=2)
    networks = make_networks(config, STATE_SPEC, action_dim=2)
    replay = ReplayBuffer(RecordSpec((("state", (3,), "float32"),), 2), ReplayConfig(capacity=64), log=lambda m: m)
    rng = np.random.default_rng(0)
    for t in range(10):
        replay.insert("a", {
            "env_index": np.arange(2, dtype=np.int32), "obs/state": rng.standard_normal((2, 3)).astype(np.float32),
            "action": rng.uniform(-1, 1, (2, 2)).astype(np.float32), "reward": np.ones(2, np.float32),
            "terminated": np.zeros(2, bool), "truncated": np.full(2, t == 6), "is_first": np.full(2, t in (0, 7)),
        })  # fmt: skip
    state, key = init_training_state(networks, jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
    stepped, metrics = make_learner_step_fn(networks, num_updates=3)(state, replay.device_fields(), key)
    # The same minibatches, sampled apart and fed to update_many: the same update.
    flat = sample_batch(replay.device_fields(), key, 3 * 2, config.batch_size, n_step=2, discount=config.discount)
    assert flat.discount is not None
    batches = jax.tree.map(lambda x: x.reshape(3, 2, *x.shape[1:]), flat)
    expected, _ = make_update_many_fn(networks)(state, batches)
    assert int(stepped.step) == 3 and np.isfinite(float(metrics["critic_loss"]))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    jax.tree.map(close, stepped.params, expected.params)


def test_critic_loss_bootstraps_with_the_batch_discount_when_given():
    config = AgentConfig(**TINY, discount=0.9)
    networks = make_networks(config, STATE_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(1), STATE_SPEC, 2, (4,))
    p = state.params
    loss = lambda b: losses.critic_loss(
        networks,
        {"encoder": p["encoder"], "critic": p["critic"]},
        state.target_params,
        p["actor"],
        p["temperature"],
        b,
        jax.random.PRNGKey(2),
    )[1]
    one_step = loss(batch)
    same = loss(batch.replace(discount=0.9 * (1.0 - batch.terminated.astype(jnp.float32))))
    np.testing.assert_allclose(one_step["target_q"], same["target_q"], rtol=1e-6)
    no_bootstrap = loss(batch.replace(discount=jnp.zeros(4)))
    np.testing.assert_allclose(no_bootstrap["target_q"], batch.reward.mean(), rtol=1e-6)


@pytest.mark.slow
def test_temperature_update_ignores_the_demo_rows_of_a_mixed_batch():
    # One critic step then the actor + temperature step: the online rows' log-probs depend on the actor's params
    # before this step and on those rows only, so a batch whose demo half is replaced gives the temperature the
    # same gradient; unmarked (demo=None), the same change gives another. (Adam's first step is lr * sign(grad),
    # so the gradient is read from its first moment, not from the new temperature.)
    networks = make_networks(AgentConfig(**{**TINY, "batch_size": 8}, critic_actor_ratio=1), STATE_SPEC, 2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    update = make_update_fn(networks)
    batch = random_batch(jax.random.PRNGKey(1), STATE_SPEC, 2, (1, 8))
    other = random_batch(jax.random.PRNGKey(2), STATE_SPEC, 2, (1, 8))
    demo = jnp.broadcast_to(jnp.arange(8) < 4, (1, 8))
    changed = jax.tree.map(lambda a, b: jnp.where(demo.reshape(*demo.shape, *[1] * (a.ndim - 2)), b, a), batch, other)
    gradient = lambda b: np.asarray(update(state, b)[0].temperature_opt_state[0].mu)
    np.testing.assert_array_equal(gradient(batch.replace(demo=demo)), gradient(changed.replace(demo=demo)))
    assert gradient(batch) != gradient(changed)


def test_update_rejects_a_batch_without_the_ratio_leading_dim():
    networks = make_networks(AgentConfig(**TINY, critic_actor_ratio=2), STATE_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="critic_actor_ratio=2"):
        make_update_fn(networks)(state, random_batch(jax.random.PRNGKey(0), STATE_SPEC, 2, (3, 4)))


@pytest.mark.slow
def test_targets_follow_the_critic_by_polyak_after_each_critic_step():
    config = AgentConfig(**TINY, critic_actor_ratio=1, tau=0.25)
    networks = make_networks(config, STATE_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    state = state.replace(target_params=jax.tree.map(jnp.zeros_like, state.target_params))
    new_state, _ = make_update_fn(networks)(state, random_batch(jax.random.PRNGKey(1), STATE_SPEC, 2, (1, 4)))
    expected = jax.tree.map(lambda online: 0.25 * online, new_state.params["critic"])  # 0.25 new + 0.75 * 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state.target_params["critic"], expected)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params["actor"], new_state.params["actor"])
    assert all(jax.tree.leaves(moved))  # the actor step ran too


@pytest.mark.slow
def test_encoder_is_trained_by_the_critic_and_only_seen_by_the_actor():
    config = AgentConfig(**TINY, encoder=TINY_ENCODER, critic_actor_ratio=1)
    networks = make_networks(config, PIXEL_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(1), PIXEL_SPEC, 2, (4,))
    p = state.params
    actor_grad = jax.grad(
        lambda enc: losses.actor_loss(networks, p["actor"], enc, p["critic"], p["temperature"], batch.obs,
                                      jax.random.PRNGKey(2))[0]
    )(p["encoder"])  # fmt: skip
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(actor_grad))
    critic_grad = jax.grad(
        lambda cp: losses.critic_loss(networks, cp, state.target_params, p["actor"], p["temperature"], batch,
                                      jax.random.PRNGKey(3))[0]
    )({"encoder": p["encoder"], "critic": p["critic"]})  # fmt: skip
    conv_grads = jax.tree.leaves(critic_grad["encoder"]["conv"])
    assert all(float(jnp.abs(g).max()) > 0.0 for g in conv_grads)


@pytest.mark.slow
def test_frozen_encoder_stays_put():
    config = AgentConfig(**TINY, encoder=EncoderConfig(channels=(4,), latent_dim=8, trainable=False),
                         critic_actor_ratio=2)  # fmt: skip
    networks = make_networks(config, PIXEL_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    new_state, _ = make_update_fn(networks)(state, random_batch(jax.random.PRNGKey(1), PIXEL_SPEC, 2, (2, 4)))
    jax.tree.map(np.testing.assert_array_equal, state.params["encoder"], new_state.params["encoder"])


@pytest.mark.slow
def test_cameras_get_one_shared_conv_net_or_one_each():
    shared = make_networks(AgentConfig(**TINY, encoder=TINY_ENCODER), PIXEL_SPEC, 2).init(jax.random.PRNGKey(0))
    own_config = AgentConfig(**TINY, encoder=EncoderConfig(channels=(4, 4), latent_dim=8, share_across_cameras=False))
    own = make_networks(own_config, PIXEL_SPEC, 2).init(jax.random.PRNGKey(0))
    assert {"conv", "bottleneck", "bottleneck_norm"} == set(shared["encoder"])
    assert {"conv_front", "conv_wrist", "bottleneck", "bottleneck_norm"} == set(own["encoder"])


def test_pretrained_encoder_weights_load_from_a_file_and_mismatches_are_refused(tmp_path):
    networks = make_networks(AgentConfig(**TINY, encoder=TINY_ENCODER), PIXEL_SPEC, 2)
    source = init_training_state(networks, jax.random.PRNGKey(7)).params["encoder"]
    path = tmp_path / "encoder.msgpack"
    save_encoder_params(path, source)
    config = AgentConfig(**TINY, encoder=EncoderConfig(channels=(4, 4), latent_dim=8, pretrained_path=str(path)))
    loaded = init_training_state(make_networks(config, PIXEL_SPEC, 2), jax.random.PRNGKey(0)).params["encoder"]
    jax.tree.map(np.testing.assert_array_equal, source, loaded)
    other = make_networks(AgentConfig(**TINY, encoder=EncoderConfig(channels=(4, 4), latent_dim=9)), PIXEL_SPEC, 2)
    with pytest.raises(ValueError, match="does not match"):
        load_encoder_params(path, other.init(jax.random.PRNGKey(0))["encoder"])
    with pytest.raises(ValueError, match="does not exist"):
        load_encoder_params(tmp_path / "missing.msgpack", source)


def test_inference_acts_for_all_envs_in_one_call_with_policy_params_only():
    networks = make_networks(AgentConfig(**TINY, encoder=TINY_ENCODER), PIXEL_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    shipped = policy_params(state.params)
    assert set(shipped) == {"encoder", "actor"}
    policy = make_inference_fn(networks)
    obs = random_batch(jax.random.PRNGKey(1), PIXEL_SPEC, 2, (7,)).obs
    sampled = policy(shipped, obs, jax.random.PRNGKey(2), deterministic=False)
    assert sampled.shape == (7, 2) and bool(jnp.all(jnp.abs(sampled) < 1))
    greedy_a = policy(shipped, obs, jax.random.PRNGKey(3), deterministic=True)
    greedy_b = policy(shipped, obs, jax.random.PRNGKey(4), deterministic=True)
    np.testing.assert_array_equal(greedy_a, greedy_b)
    features = networks.encoder.apply({"params": shipped["encoder"]}, obs)
    mean, _ = networks.actor.apply({"params": shipped["actor"]}, features)
    np.testing.assert_allclose(greedy_a, jnp.tanh(mean), atol=1e-6)


def test_make_networks_validates_observations_and_config():
    with pytest.raises(ValueError, match="uint8"):
        make_networks(AgentConfig(), {"pixels/a": jax.ShapeDtypeStruct((8, 8, 3), jnp.float32)}, 2)
    with pytest.raises(ValueError, match="1-D"):
        make_networks(AgentConfig(), {"state": jax.ShapeDtypeStruct((2, 3), jnp.float32)}, 2)
    with pytest.raises(ValueError, match="critic_subsample_size"):
        AgentConfig(critic_ensemble_size=2, critic_subsample_size=3)
    with pytest.raises(ValueError, match="discount"):
        AgentConfig(discount=1.5)
    assert obs_spec_from_batch({"state": np.zeros((5, 3), np.float32)})["state"].shape == (3,)


def test_random_shift_is_an_edge_padded_crop_per_image():
    images = jax.random.randint(jax.random.PRNGKey(0), (16, 6, 5, 3), 0, 256).astype(jnp.uint8)
    shifted = np.asarray(random_shift(images, jax.random.PRNGKey(1), pad=2))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    offsets = []
    for i in range(16):
        matches = [
            (y, x) for y in range(5) for x in range(5) if np.array_equal(padded[i, y : y + 6, x : x + 5], shifted[i])
        ]
        assert matches, f"image {i} is not a crop of its edge-padded self"
        offsets.append(matches[0])
    assert len(set(offsets)) > 1  # each image has its own shift
    np.testing.assert_array_equal(random_shift(images, jax.random.PRNGKey(1), pad=0), images)
    with pytest.raises(ValueError, match="pad"):
        random_shift(images, jax.random.PRNGKey(1), pad=-1)


def test_shift_pixels_leaves_state_alone_and_shifts_cameras_independently():
    image = jnp.arange(8 * 8 * 3, dtype=jnp.int32).reshape(1, 8, 8, 3).astype(jnp.uint8)
    obs = {"pixels/a": image, "pixels/b": image, "state": jnp.ones((1, 2))}
    outs = [shift_pixels(obs, jax.random.PRNGKey(k), pad=3) for k in range(8)]
    assert all(out["state"] is obs["state"] for out in outs)
    assert any(not np.array_equal(out["pixels/a"], out["pixels/b"]) for out in outs)


@pytest.mark.slow
def test_actor_step_reuses_the_critic_steps_features_or_encodes_again():
    # Both ways run the same critic step. With a frozen encoder the features are the same either way, so the
    # whole update is too; with a trained one only the actor's step differs (features before vs after the
    # critic step's gradient).
    batch = jax.device_put(random_batch(jax.random.PRNGKey(1), PIXEL_SPEC, 2, (1, 4)), jax.devices()[0])
    for trainable in (False, True):
        results = {}
        for mode in ("critic_step", "recompute"):
            encoder = EncoderConfig(channels=(4, 4), latent_dim=8, trainable=trainable)
            config = AgentConfig(**TINY, encoder=encoder, critic_actor_ratio=1, actor_features=mode)
            networks = make_networks(config, PIXEL_SPEC, action_dim=2)
            results[mode] = make_update_fn(networks)(init_training_state(networks, jax.random.PRNGKey(0)), batch)[0]
        reused, recomputed = results["critic_step"].params, results["recompute"].params
        same = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        jax.tree.map(same, reused["critic"], recomputed["critic"])
        jax.tree.map(same, reused["encoder"], recomputed["encoder"])
        moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), reused["actor"], recomputed["actor"])
        actor_differs = any(jax.tree.leaves(moved))
        assert actor_differs == trainable


def test_bf16_compute_keeps_float32_params_optimizer_state_and_outputs():
    config = AgentConfig(**TINY, encoder=TINY_ENCODER, compute_dtype="bfloat16")
    networks = make_networks(config, PIXEL_SPEC, action_dim=2)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(1), PIXEL_SPEC, 2, (config.critic_actor_ratio, config.batch_size))
    # The convolutions and dense layers compute in bfloat16 ...
    features = networks.encode(state.params["encoder"], jax.tree.map(lambda x: x[0], batch).obs)
    obs = jax.tree.map(lambda x: x[0], batch).obs
    critic = lambda p: networks.critic.apply({"params": p}, features, jnp.zeros((len(features), 2)))
    for fn, params in ((critic, state.params["critic"]), (lambda p: networks.encode(p, obs), state.params["encoder"])):
        assert "bf16[" in str(jax.make_jaxpr(fn)(params))
    # ... while parameters, optimizer state, features, Q values and the update's metrics stay float32.
    stepped, metrics = make_update_fn(networks)(state, batch)
    for tree in (stepped.params, stepped.target_params, stepped.critic_opt_state, stepped.actor_opt_state):
        floats = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {np.dtype("float32")}
    assert features.dtype == jnp.float32 and all(np.isfinite(float(v)) for v in metrics.values())
    with pytest.raises(ValueError, match="compute_dtype"):
        AgentConfig(compute_dtype="float16")
