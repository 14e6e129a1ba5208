"""The tanh-squashed diagonal Gaussian policy distribution, as pure functions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def tanh_log_det_jacobian(pre_tanh: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2), summed over the last axis, in the stable form 2 (log 2 - u - softplus(-2u))."""
    return jnp.sum(2.0 * (math.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)


def sample_tanh_gaussian(
    mean: jax.Array,  # [..., A]
    std: jax.Array,  # [..., A], > 0
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:  # action [..., A] in (-1, 1), log_prob [...]
    """Draws a = tanh(mean + std * eps) with eps = jax.random.normal(key, mean.shape), and its log-density."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    pre_tanh = mean + std * eps
    gaussian_log_prob = jnp.sum(-0.5 * eps**2 - jnp.log(std) - _HALF_LOG_2PI, axis=-1)
    return jnp.tanh(pre_tanh), gaussian_log_prob - tanh_log_det_jacobian(pre_tanh)
