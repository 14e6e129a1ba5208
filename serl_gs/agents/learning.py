"""The training state and the pure, jitted-once update shared by SAC and DrQ.

`update(state, batch) -> (state, metrics)` takes `critic_actor_ratio` fresh minibatches ([U, B, ...]):
U critic steps (a `lax.scan`), then an actor step and a temperature step on the last minibatch (SERL's
U - 1 critic-only updates followed by one critic + actor + temperature update); the temperature fits the
entropy of that minibatch's online rows (`Batch.demo`, losses.temperature_loss). Polyak averaging of the
target encoder and critic follows every critic step. With pixel observations each minibatch's obs and
next_obs are randomly shifted (independently) first. On the CPU backend, pixel agents unroll the critic
steps instead (see AgentConfig.scan_unroll); both paths compute the same update.

`update_many` runs K updates in one call (a `lax.scan` over K batches) and `learner_step` also samples those
K batches from the replay inside the same call: on a CPU, small state networks are bound by per-call costs
(dispatch, sampling's cumsum over the whole replay), which one call per K updates pays once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
import optax

from serl_gs.agents import losses
from serl_gs.agents.networks import AgentNetworks, Params
from serl_gs.agents.pretrained import load_encoder_params
from serl_gs.data import sampling
from serl_gs.data.augment import shift_pixels
from serl_gs.data.batch import Batch

ActorInput = jax.Array | dict[str, jax.Array]  # encoded obs [B, F], or an obs dict to encode


@flax.struct.dataclass
class TrainingState:
    params: dict[str, Params]  # {"encoder", "critic", "actor", "temperature"}
    target_params: dict[str, Params]  # {"encoder", "critic"}
    critic_opt_state: optax.OptState  # over {"encoder", "critic"}
    actor_opt_state: optax.OptState
    temperature_opt_state: optax.OptState
    rng: jax.Array
    step: jax.Array  # int32 []: updates done (each = critic_actor_ratio critic steps + 1 actor step)


@dataclass(frozen=True)
class _Optimizers:
    critic: optax.GradientTransformation
    actor: optax.GradientTransformation
    temperature: optax.GradientTransformation


def _optimizers(networks: AgentNetworks) -> _Optimizers:
    config = networks.config
    return _Optimizers(
        critic=optax.adam(config.critic_lr),
        actor=optax.adam(config.actor_lr),
        temperature=optax.adam(config.temperature_lr),
    )


def _critic_part(params: Mapping[str, Params]) -> dict[str, Params]:
    return {"encoder": params["encoder"], "critic": params["critic"]}


def init_training_state(networks: AgentNetworks, key: jax.Array, device: jax.Device | None = None) -> TrainingState:
    """Fresh parameters (the encoder from `config.encoder.pretrained_path` when set), targets = copies.

    The state is placed on `device` (default: the first device) explicitly: jit caches committed and
    uncommitted arguments separately, so an uncommitted first state would cost a second compile as soon
    as it meets the replay's (committed) batches.
    """
    init_key, rng = jax.random.split(key)
    params = networks.init(init_key)
    if networks.config.encoder.pretrained_path is not None:
        if not networks.image_keys:
            raise ValueError("encoder.pretrained_path is set but the observations hold no pixels")
        params["encoder"] = load_encoder_params(networks.config.encoder.pretrained_path, params["encoder"])
    opt = _optimizers(networks)
    state = TrainingState(
        params=params,
        target_params=jax.tree.map(jnp.copy, _critic_part(params)),
        critic_opt_state=opt.critic.init(_critic_part(params)),
        actor_opt_state=opt.actor.init(params["actor"]),
        temperature_opt_state=opt.temperature.init(params["temperature"]),
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )
    return jax.device_put(state, device or jax.devices()[0])


def _augment(networks: AgentNetworks, batch: Batch, key: jax.Array) -> Batch:
    pad = networks.config.image_augmentation_pad
    if not networks.image_keys or pad == 0:
        return batch
    obs_key, next_key = jax.random.split(key)
    return batch.replace(
        obs=shift_pixels(batch.obs, obs_key, pad), next_obs=shift_pixels(batch.next_obs, next_key, pad)
    )


def make_update_fn(networks: AgentNetworks) -> Callable[[TrainingState, Batch], tuple[TrainingState, dict]]:
    """Returns the jitted `update(state, batch) -> (state, metrics)`; batch leaves are [ratio, B, ...]."""
    return jax.jit(_make_update(networks))


def make_update_many_fn(networks: AgentNetworks) -> Callable[[TrainingState, Batch], tuple[TrainingState, dict]]:
    """Returns the jitted `update_many(state, batches) -> (state, metrics)`: K updates in one call.

    Batch leaves are [K, ratio, B, ...]; the result equals K calls of `update` on batches[0], ..., batches[K-1]
    (metrics: their mean). One call instead of K: small state networks on a CPU are bound by per-call costs.
    """
    return jax.jit(_make_update_many(networks))


def make_learner_step_fn(
    networks: AgentNetworks, num_updates: int, frame_stack: int = 1
) -> Callable[[TrainingState, dict, jax.Array], tuple[TrainingState, dict]]:
    """Returns the jitted `learner_step(state, fields, key) -> (state, metrics)`: samples `num_updates` x
    critic_actor_ratio minibatches (config.n_step returns; camera stacks of `frame_stack` frames) from the
    replay's device-resident fields (`ReplayBuffer.device_fields()`) and runs `num_updates` updates, all in
    one call."""
    if num_updates < 1:
        raise ValueError(f"num_updates must be >= 1, got {num_updates}")
    config = networks.config
    ratio = config.critic_actor_ratio
    update_many = _make_update_many(networks)

    def learner_step(state: TrainingState, fields: dict, key: jax.Array) -> tuple[TrainingState, dict]:
        flat = sampling.sample_batch(
            fields, key, num_updates * ratio, config.batch_size, config.n_step, config.discount, frame_stack
        )
        batches = jax.tree.map(lambda x: x.reshape(num_updates, ratio, *x.shape[1:]), flat)
        return update_many(state, batches)

    return jax.jit(learner_step)


def _make_update_many(networks: AgentNetworks):
    update = _make_update(networks)
    unroll = unrolls_updates(networks)

    def update_many(state: TrainingState, batches: Batch) -> tuple[TrainingState, dict[str, jax.Array]]:
        if unroll:  # convolutions in a loop body are slow on XLA:CPU (see AgentConfig.scan_unroll)
            infos = []
            for i in range(batches.reward.shape[0]):
                state, info = update(state, jax.tree.map(lambda x, i=i: x[i], batches))
                infos.append(info)
            metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *infos)
        else:
            state, metrics = jax.lax.scan(update, state, batches)
        return state, jax.tree.map(lambda m: m.mean(axis=0), metrics)

    return update_many


def unrolls_updates(networks: AgentNetworks) -> bool:
    """Whether updates run unrolled (pixel agents on XLA:CPU, see AgentConfig.scan_unroll) rather than scanned."""
    config = networks.config
    if config.scan_unroll == "auto":
        return bool(networks.image_keys) and jax.default_backend() == "cpu"
    return config.scan_unroll == "always"


def _make_update(networks: AgentNetworks):
    config = networks.config
    ratio = config.critic_actor_ratio
    target_entropy = config.resolved_target_entropy(networks.action_dim)
    opt = _optimizers(networks)
    unroll = unrolls_updates(networks)

    reuse_features = config.actor_features == "critic_step"

    def critic_step(state: TrainingState, minibatch: Batch) -> tuple[TrainingState, dict, ActorInput]:
        """One critic step; also returns what the actor step needs if this is the last one: the minibatch's
        encoded obs (config.actor_features == "critic_step") or its augmented obs."""
        rng, aug_key, loss_key = jax.random.split(state.rng, 3)
        minibatch = _augment(networks, minibatch, aug_key)
        critic_params = _critic_part(state.params)
        grads, info = jax.grad(losses.critic_loss, argnums=1, has_aux=True)(
            networks, critic_params, state.target_params, state.params["actor"],
            state.params["temperature"], minibatch, loss_key,
        )  # fmt: skip
        updates, critic_opt_state = opt.critic.update(grads, state.critic_opt_state, critic_params)
        critic_params = optax.apply_updates(critic_params, updates)
        target_params = optax.incremental_update(critic_params, state.target_params, config.tau)
        state = state.replace(
            params={**state.params, **critic_params},
            target_params=target_params,
            critic_opt_state=critic_opt_state,
            rng=rng,
        )
        features = info.pop(losses.OBS_FEATURES)
        return state, info, features if reuse_features else minibatch.obs

    def scanned_critic_step(carry: tuple[TrainingState, ActorInput], minibatch: Batch):
        # The carry keeps the actor step's input from the latest minibatch: the actor step after the scan uses
        # it, so the critic step is traced once for all `ratio` steps.
        state, info, augmented = critic_step(carry[0], minibatch)
        return (state, augmented), info

    def actor_and_temperature_step(
        state: TrainingState, actor_input: ActorInput, demo: jax.Array | None
    ) -> tuple[TrainingState, dict]:
        rng, actor_key = jax.random.split(state.rng)
        params = state.params
        features = actor_input if reuse_features else networks.encode(params["encoder"], actor_input)
        actor_grads, actor_info = jax.grad(losses.actor_loss_on_features, argnums=1, has_aux=True)(
            networks, params["actor"], params["critic"], params["temperature"], features, actor_key,
        )  # fmt: skip
        actor_updates, actor_opt_state = opt.actor.update(actor_grads, state.actor_opt_state, params["actor"])
        log_probs = actor_info.pop("log_probs")
        temp_grads, temp_info = jax.grad(losses.temperature_loss, has_aux=True)(
            params["temperature"], log_probs, target_entropy, demo
        )
        temp_updates, temp_opt_state = opt.temperature.update(
            temp_grads, state.temperature_opt_state, params["temperature"]
        )
        state = state.replace(
            params={
                **params,
                "actor": optax.apply_updates(params["actor"], actor_updates),
                "temperature": optax.apply_updates(params["temperature"], temp_updates),
            },
            actor_opt_state=actor_opt_state,
            temperature_opt_state=temp_opt_state,
            rng=rng,
        )
        return state, {**actor_info, **temp_info}

    def update(state: TrainingState, batch: Batch) -> tuple[TrainingState, dict[str, jax.Array]]:
        leading = batch.reward.shape[0] if batch.reward.ndim == 2 else None
        if leading != ratio:
            raise ValueError(
                f"update needs batch leaves shaped [critic_actor_ratio={ratio}, B, ...], "
                f"got reward shape {batch.reward.shape}"
            )
        first = jax.tree.map(lambda x: x[0], batch)
        # Zeros shaped like what critic_step hands the actor step (features, or an augmented minibatch's obs).
        placeholder = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(lambda m: critic_step(state, m)[2], first)
        )
        if unroll or ratio == 1:  # XLA keeps even a one-step scan as a loop; unrolled, there is none
            carry, infos = (state, placeholder), []
            for i in range(ratio):
                carry, info = scanned_critic_step(carry, jax.tree.map(lambda x, i=i: x[i], batch))
                infos.append(info)
            (state, actor_input), critic_info = carry, jax.tree.map(lambda *xs: jnp.stack(xs), *infos)
        else:
            (state, actor_input), critic_info = jax.lax.scan(scanned_critic_step, (state, placeholder), batch)
        # The actor step's minibatch is the last one; its demo rows (if any) stay out of the temperature's fit.
        demo = None if batch.demo is None else batch.demo[ratio - 1]
        state, actor_info = actor_and_temperature_step(state, actor_input, demo)
        critic_metrics = jax.tree.map(jnp.mean, critic_info)
        state = state.replace(step=state.step + 1)
        return state, {**critic_metrics, **actor_info}

    return update
