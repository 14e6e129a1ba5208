"""Networks of the SAC / DrQ agent (Flax linen) and the inference function shipped to actors.

Parameters are one dict: {"encoder", "critic", "actor", "temperature"}. The encoder turns an observation dict
into features (conv net + bottleneck per the EncoderConfig for "pixels/<camera>" entries, raw vectors for
the rest); the critic trains it, the actor sees its output through a stop-gradient. With state-only
observations the encoder has no parameters and the agent is plain SAC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.distributions import sample_tanh_gaussian
from serl_gs.data.records import DEPTH_PREFIX, IMAGE_DTYPES, PIXELS_PREFIX, SEGMENTATION_PREFIX

log = logging.getLogger(__name__)

Params = Any  # a pytree of arrays
ObsSpec = Mapping[str, jax.ShapeDtypeStruct]  # per-item shapes (no batch dim) by observation name

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "silu": nn.silu,
    "elu": nn.elu,
}


def obs_spec_from_batch(obs: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    """Per-item shapes of a batched observation dict ({"state": [B, d], "pixels/cam": [B, H, W, 3]})."""
    return {name: jax.ShapeDtypeStruct(tuple(x.shape[1:]), x.dtype) for name, x in obs.items()}


class MLP(nn.Module):
    hidden_dims: Sequence[int]
    activation: str
    layer_norm: bool
    dtype: Any = jnp.float32  # compute dtype of the dense layers (parameters stay float32)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # [B, F] -> [B, hidden_dims[-1]]
        for width in self.hidden_dims:
            x = nn.Dense(width, dtype=self.dtype)(x)
            if self.layer_norm:
                x = nn.LayerNorm(dtype=self.dtype)(x)  # statistics in float32 whatever the dtype (flax)
            x = _ACTIVATIONS[self.activation](x)
        return x


class ConvNet(nn.Module):
    """3x3 convolutions with ReLU (DrQ-v2's encoder), flattened."""

    channels: Sequence[int]
    first_stride: int
    dtype: Any = jnp.float32  # compute dtype of the convolutions

    @nn.compact
    def __call__(self, pixels: jax.Array, depth: jax.Array | None = None) -> jax.Array:
        """[B, H, W, 3k] uint8 (and depth [B, H, W, k] uint16 mm: RGB-D) -> [B, F] in `dtype`."""
        x = pixels.astype(jnp.float32) / 255.0 - 0.5
        if depth is not None:  # metres d -> d / (1 + d) - 0.5: in [-0.5, 0.5) like RGB, at any scene scale
            metres = depth.astype(jnp.float32) / 1000.0
            x = jnp.concatenate([x, metres / (1.0 + metres) - 0.5], axis=-1)
        x = x.astype(self.dtype)
        for i, width in enumerate(self.channels):
            stride = self.first_stride if i == 0 else 1
            x = nn.relu(nn.Conv(width, (3, 3), strides=(stride, stride), padding="VALID", dtype=self.dtype)(x))
        return x.reshape(*x.shape[:-3], -1)


class ObservationEncoder(nn.Module):
    """obs dict -> features: cameras through conv nets and a Dense-LayerNorm-tanh bottleneck, then vectors."""

    image_keys: Sequence[str]
    vector_keys: Sequence[str]
    config: EncoderConfig
    dtype: Any = jnp.float32  # compute dtype of convolutions and the bottleneck; features come out float32
    depth_keys: Sequence[str | None] = ()  # per image key: its camera's "depth/<cam>" (RGB-D) or None

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array]) -> jax.Array:  # -> [B, F] float32
        parts = []
        if self.image_keys:
            cfg = self.config
            shared = (
                ConvNet(cfg.channels, cfg.first_stride, self.dtype, name="conv") if cfg.share_across_cameras else None
            )
            images = []
            depth_keys = self.depth_keys or (None,) * len(self.image_keys)
            for key, depth_key in zip(self.image_keys, depth_keys, strict=True):
                net = shared or ConvNet(
                    cfg.channels, cfg.first_stride, self.dtype, name=f"conv_{key[len(PIXELS_PREFIX) :]}"
                )
                images.append(net(obs[key], obs[depth_key] if depth_key else None))
            x = nn.Dense(cfg.latent_dim, dtype=self.dtype, name="bottleneck")(jnp.concatenate(images, axis=-1))
            x = nn.LayerNorm(dtype=jnp.float32, name="bottleneck_norm")(x)  # float32 from here on
            parts.append(nn.tanh(x))
        parts += [obs[key].astype(jnp.float32) for key in self.vector_keys]
        return jnp.concatenate(parts, axis=-1)


class Actor(nn.Module):
    """features -> (mean, std) of the pre-tanh Gaussian."""

    action_dim: int
    hidden_dims: Sequence[int]
    activation: str
    layer_norm: bool
    std_min: float
    std_max: float
    dtype: Any = jnp.float32  # compute dtype of the hidden layers; the Gaussian's heads stay float32

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:  # [B, F] -> 2 x [B, A]
        x = MLP(self.hidden_dims, self.activation, self.layer_norm, self.dtype)(features).astype(jnp.float32)
        mean = nn.Dense(self.action_dim, name="mean")(x)
        log_std = nn.Dense(self.action_dim, name="log_std")(x)
        return mean, jnp.clip(jnp.exp(log_std), self.std_min, self.std_max)


class Critic(nn.Module):
    hidden_dims: Sequence[int]
    activation: str
    layer_norm: bool
    dtype: Any = jnp.float32  # compute dtype of the hidden layers; Q comes out float32

    @nn.compact
    def __call__(self, features: jax.Array, action: jax.Array) -> jax.Array:  # [B, F], [B, A] -> [B]
        x = MLP(self.hidden_dims, self.activation, self.layer_norm, self.dtype)(jnp.concatenate([features, action], -1))
        return nn.Dense(1, name="q")(x.astype(jnp.float32))[..., 0]


def critic_ensemble(ensemble_size: int, **critic_kwargs) -> nn.Module:
    """`ensemble_size` independent critics evaluated in one vmapped call: -> [E, B]."""
    ensemble = nn.vmap(
        Critic,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=ensemble_size,
    )
    return ensemble(**critic_kwargs)


def _inverse_softplus(x: float) -> float:
    return float(np.log(np.expm1(x)))


def temperature_value(temperature_params: jax.Array) -> jax.Array:
    """The temperature is a Lagrange multiplier kept positive by a softplus."""
    return jax.nn.softplus(temperature_params)


@dataclass(frozen=True)
class AgentNetworks:
    """Module definitions plus what they were built for; `init` makes the parameter dict."""

    encoder: ObservationEncoder
    actor: Actor
    critic: nn.Module
    obs_spec: dict[str, jax.ShapeDtypeStruct]
    action_dim: int
    config: AgentConfig

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(self.encoder.image_keys)

    def encode(self, encoder_params: Params, obs: Mapping[str, jax.Array]) -> jax.Array:  # -> [B, F]
        features = self.encoder.apply({"params": encoder_params}, obs)
        return features if self.config.encoder.trainable else jax.lax.stop_gradient(features)

    def init(self, key: jax.Array) -> dict[str, Params]:
        k_enc, k_actor, k_critic = jax.random.split(key, 3)
        dummy_obs = {name: jnp.zeros((1, *s.shape), s.dtype) for name, s in self.obs_spec.items()}
        encoder_params = self.encoder.init(k_enc, dummy_obs).get("params", {})
        features = self.encoder.apply({"params": encoder_params}, dummy_obs)
        dummy_action = jnp.zeros((1, self.action_dim), jnp.float32)
        return {
            "encoder": encoder_params,
            "actor": self.actor.init(k_actor, features)["params"],
            "critic": self.critic.init(k_critic, features, dummy_action)["params"],
            "temperature": jnp.asarray(_inverse_softplus(self.config.initial_temperature), jnp.float32),
        }


def make_networks(config: AgentConfig, obs_spec: ObsSpec, action_dim: int) -> AgentNetworks:
    """Builds the agent's modules for observations shaped like `obs_spec` and `action_dim` actions."""
    if action_dim < 1:
        raise ValueError(f"action_dim must be >= 1, got {action_dim}")
    if not obs_spec:
        raise ValueError("obs_spec is empty: the agent needs at least one observation")
    image_keys, vector_keys = [], []
    for name, spec in sorted(obs_spec.items()):
        if name.startswith((DEPTH_PREFIX, SEGMENTATION_PREFIX)):
            _check_extra_image(name, spec, obs_spec)  # depth: channels of its camera's RGB; segmentation: stored only
        elif name.startswith(PIXELS_PREFIX):
            # [H, W, 3k]: k RGB frames of one camera stacked along channels, oldest first (frame history).
            if len(spec.shape) != 3 or spec.shape[-1] % 3 or spec.dtype != jnp.uint8:
                raise ValueError(
                    f"observation {name!r} must be uint8 [H, W, 3k], got {spec.dtype}{list(spec.shape)}"
                )
            image_keys.append(name)
        else:
            if len(spec.shape) != 1:
                raise ValueError(f"vector observation {name!r} must be 1-D per item, got shape {spec.shape}")
            vector_keys.append(name)
    dtype = resolve_compute_dtype(config.compute_dtype)
    mlp = dict(hidden_dims=tuple(config.hidden_dims), activation=config.activation, dtype=dtype)
    depth_keys = tuple(d if (d := DEPTH_PREFIX + k[len(PIXELS_PREFIX) :]) in obs_spec else None for k in image_keys)
    return AgentNetworks(
        encoder=ObservationEncoder(
            tuple(image_keys), tuple(vector_keys), config.encoder, dtype, depth_keys if any(depth_keys) else ()
        ),
        actor=Actor(
            action_dim,
            layer_norm=config.actor_layer_norm,
            std_min=config.std_min,
            std_max=config.std_max,
            **mlp,
        ),
        critic=critic_ensemble(config.critic_ensemble_size, layer_norm=config.critic_layer_norm, **mlp),
        obs_spec=dict(obs_spec),
        action_dim=action_dim,
        config=config,
    )


def _check_extra_image(name: str, spec, obs_spec: ObsSpec) -> None:
    """A depth or segmentation observation: [H, W, k] of its dtype, beside its camera's [H, W, 3k] RGB."""
    prefix = DEPTH_PREFIX if name.startswith(DEPTH_PREFIX) else SEGMENTATION_PREFIX
    rgb = obs_spec.get(PIXELS_PREFIX + name[len(prefix) :])
    dtype = IMAGE_DTYPES[prefix]
    if len(spec.shape) != 3 or spec.dtype != dtype:
        raise ValueError(f"observation {name!r} must be {dtype} [H, W, k], got {spec.dtype}{list(spec.shape)}")
    if rgb is None or tuple(rgb.shape) != (*spec.shape[:2], 3 * spec.shape[2]):
        raise ValueError(
            f"observation {name!r} {list(spec.shape)} needs its camera's RGB {PIXELS_PREFIX + name[len(prefix) :]!r}"
            f" of [H, W, 3k] with the same H, W and frames, got {None if rgb is None else list(rgb.shape)}"
        )


_LOGGED_AUTO_DTYPE: set[str] = set()


def resolve_compute_dtype(name: str) -> Any:
    """AgentConfig.compute_dtype -> a jnp dtype; "auto" is bfloat16 on a GPU, float32 elsewhere (logged once)."""
    if name == "auto":
        backend = jax.default_backend()
        name = "bfloat16" if backend == "gpu" else "float32"
        if backend not in _LOGGED_AUTO_DTYPE:
            _LOGGED_AUTO_DTYPE.add(backend)
            log.info("compute_dtype auto: %s on the %s backend", name, backend)
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"compute_dtype must be auto, float32 or bfloat16, got {name!r}")
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def policy_params(params: Mapping[str, Params]) -> dict[str, Params]:
    """What actors receive: the encoder and the actor, nothing else."""
    return {"encoder": params["encoder"], "actor": params["actor"]}


def make_inference_fn(networks: AgentNetworks) -> Callable[..., jax.Array]:
    """Returns jitted `policy(policy_params, obs, key, deterministic, noise=None) -> actions [N, A]` for a batch
    of envs.

    `policy_params` is `policy_params(state.params)`; `obs` is the env's batched obs dict; `deterministic`
    (a Python bool) selects tanh(mean) instead of a sample. `noise` [N, A], when given, is the standard normal
    eps of the sample tanh(mean + std * eps) instead of one drawn from `key` (e.g. temporally correlated
    noise, agents.exploration).
    """

    @partial(jax.jit, static_argnames="deterministic")
    def policy(
        params: Mapping[str, Params],
        obs: Mapping[str, jax.Array],
        key: jax.Array,
        deterministic: bool,
        noise: jax.Array | None = None,
    ):
        features = networks.encoder.apply({"params": params["encoder"]}, obs)
        mean, std = networks.actor.apply({"params": params["actor"]}, features)
        if deterministic:
            return jnp.tanh(mean)
        if noise is not None:
            return jnp.tanh(mean + std * noise)
        action, _ = sample_tanh_gaussian(mean, std, key)
        return action

    return policy
