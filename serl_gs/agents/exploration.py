"""Temporally correlated exploration noise for the actor: pink (1/f) noise per env, per action dim.

SAC acts with a = tanh(mean + std * eps). With eps white (independent every step), the arm jitters around its
mean: a pick needs the gripper held closed for several steps while the arm rises, which independent noise
almost never does. Pink noise (power spectral density ~ 1/f, Eberhard et al., "Pink Noise Is All You Need",
ICLR 2023) keeps each eps_t standard normal but correlated over time, so an action drifts one way for a while:
the policy's own std still sets how far. Each env draws a fresh sequence of `episode_length` steps when an
episode starts; `beta` = 0 is white noise, 1 pink, 2 red (Brownian).
"""

from __future__ import annotations

import numpy as np


def powerlaw_noise(rng: np.random.Generator, beta: float, shape: tuple[int, ...], steps: int) -> np.ndarray:
    """Gaussian noise [*shape, steps] with power spectral density ~ 1/f^beta along the last axis, each sequence
    scaled to zero mean and unit variance (float32)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    freqs = np.fft.rfftfreq(steps)
    freqs[0] = freqs[1]  # the lowest frequency a sequence of this length resolves stands in for DC
    amplitude = freqs ** (-beta / 2.0)
    spectrum = rng.standard_normal((*shape, freqs.size)) + 1j * rng.standard_normal((*shape, freqs.size))
    x = np.fft.irfft(spectrum * amplitude, n=steps, axis=-1)
    x = x - x.mean(axis=-1, keepdims=True)
    return (x / np.maximum(x.std(axis=-1, keepdims=True), 1e-8)).astype(np.float32)


class ColoredNoise:
    """Per-env noise sequences for a batch of envs: `next()` gives eps [num_envs, action_dim] for this step;
    `reset(done)` starts fresh sequences for the envs whose episodes just ended."""

    def __init__(self, num_envs: int, action_dim: int, steps: int, beta: float = 1.0, seed: int = 0):
        if num_envs < 1 or action_dim < 1:
            raise ValueError(f"num_envs and action_dim must be >= 1, got {num_envs}, {action_dim}")
        self.beta, self.steps = beta, steps
        self._rng = np.random.default_rng(seed)
        self._noise = powerlaw_noise(self._rng, beta, (num_envs, action_dim), steps)  # [N, A, T]
        self._t = np.zeros(num_envs, np.int64)

    def next(self) -> np.ndarray:
        """eps [num_envs, action_dim] for this step; each env advances one step in its sequence (and wraps to a
        fresh sequence if an episode outlasts it)."""
        envs = np.arange(self._noise.shape[0])
        over = np.flatnonzero(self._t >= self.steps)
        if over.size:
            self.reset_envs(over)
        eps = self._noise[envs, :, self._t]
        self._t += 1
        return eps

    def reset(self, done: np.ndarray) -> None:
        """Fresh sequences for the envs where `done` [num_envs] is True."""
        self.reset_envs(np.flatnonzero(np.asarray(done)))

    def reset_envs(self, envs: np.ndarray) -> None:
        if envs.size:
            self._noise[envs] = powerlaw_noise(self._rng, self.beta, (envs.size, self._noise.shape[1]), self.steps)
            self._t[envs] = 0
