"""Encoder weights from a user-given file: flax-serialized (msgpack) params, checked against the encoder."""

from __future__ import annotations

import os

import flax.serialization
import jax
import numpy as np

from serl_gs.agents.networks import Params


def save_encoder_params(path: str | os.PathLike, encoder_params: Params) -> None:
    """Writes `state.params["encoder"]` in the format `load_encoder_params` reads (no pickle)."""
    with open(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, encoder_params)))


def load_encoder_params(path: str | os.PathLike, like: Params) -> Params:
    """Reads encoder params and checks every leaf's path and shape against freshly initialised `like`."""
    if not os.path.isfile(path):
        raise ValueError(f"pretrained encoder file {os.fspath(path)!r} does not exist")
    with open(path, "rb") as f:
        try:
            loaded = flax.serialization.msgpack_restore(f.read())
        except Exception as error:  # msgpack raises several types for a corrupt or foreign file
            raise ValueError(f"{os.fspath(path)!r} is not a flax msgpack file: {error}") from error
    expected = {jax.tree_util.keystr(p): np.shape(x) for p, x in jax.tree_util.tree_leaves_with_path(like)}
    got = {jax.tree_util.keystr(p): np.shape(x) for p, x in jax.tree_util.tree_leaves_with_path(loaded)}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise ValueError(
            f"pretrained encoder {os.fspath(path)!r} does not match this encoder: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}, wrong shapes "
            f"{[(k, got[k], expected[k]) for k in wrong[:4]]}"
        )
    return jax.tree.map(lambda x, ref: jax.numpy.asarray(x, dtype=ref.dtype), loaded, like)
