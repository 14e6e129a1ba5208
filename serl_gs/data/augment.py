"""Random-shift image augmentation (DrQ): pad with edge pixels, crop back at a random offset per image."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from serl_gs.data.records import image_prefix


def random_shift(
    images: jax.Array,  # [B, H, W, C] any dtype
    key: jax.Array,
    pad: int,
) -> jax.Array:  # [B, H, W, C], same dtype
    """Shifts each image independently by up to `pad` pixels in x and y, repeating edge pixels."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    if pad == 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
    crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


def shift_pixels(
    obs: dict[str, jax.Array],  # {"pixels/<cam>": [B, H, W, 3k] uint8, "depth/<cam>": [B, H, W, k], ...}
    key: jax.Array,
    pad: int,
) -> dict[str, jax.Array]:
    """Applies `random_shift` to every camera image, with an independent key per camera; a camera's RGB, depth
    and segmentation share its key, so each item's shift is the same in all three (they stay aligned)."""
    cameras = sorted({name[len(p) :] for name in obs if (p := image_prefix(name)) is not None})
    if not cameras or pad == 0:
        return obs
    keys = dict(zip(cameras, jax.random.split(key, len(cameras)), strict=True))
    shifted = dict(obs)
    for name in obs:
        if (prefix := image_prefix(name)) is not None:
            shifted[name] = random_shift(obs[name], keys[name[len(prefix) :]], pad)
    return shifted
