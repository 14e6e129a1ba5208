"""Random-shift image augmentation (DrQ): pad with edge pixels, crop back at a random offset per image."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from serl_gs.data.records import PIXELS_PREFIX


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
    obs: dict[str, jax.Array],  # {"pixels/<cam>": [B, H, W, 3] uint8, others untouched}
    key: jax.Array,
    pad: int,
) -> dict[str, jax.Array]:
    """Applies `random_shift` to every "pixels/..." entry, with an independent key per camera."""
    pixel_names = sorted(name for name in obs if name.startswith(PIXELS_PREFIX))
    if not pixel_names or pad == 0:
        return obs
    keys = jax.random.split(key, len(pixel_names))
    shifted = dict(obs)
    for name, camera_key in zip(pixel_names, keys, strict=True):
        shifted[name] = random_shift(obs[name], camera_key, pad)
    return shifted
