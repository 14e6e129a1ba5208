"""Env state as pickle-free bytes: save a batch of envs (or some of them) and continue it later, bit for bit.

Layout (the transport's convention, serl_gs.transport.wire): a u32 little-endian header length, a msgpack
header, then the raw little-endian C-contiguous bytes of each array in header order:

    {"format": "serl_gs.env_state", "v": 1, "meta": {...}, "arrays": [[name, dtype, shape], ...]}

`meta` says what the state belongs to (task, config, physics path, how many envs, which); `set_state`
refuses bytes of another task, physics path or layout with a ValueError naming the mismatch. Arrays are named
by their path in the state pytree (`jax.tree_util.keystr`), so a missing or extra field is named too.

Why restoring continues bit-identically: every leaf the next step reads is saved exactly (no dtype change).
On MJX that is the whole `State` pytree, `mjx.Data` included, except MJX-Warp's contact and constraint buffers
shared by all envs, which every physics step rebuilds before reading them; on MuJoCo C it is the task's
`State` plus the engine's full physics state vector (time, qpos, qvel, act, ...) and its warm start. The
observations last returned are saved too (the pixels of a restored env are the ones it had, not re-rendered).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

FORMAT = "serl_gs.env_state"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
_DTYPES = {
    n: np.dtype(n).newbyteorder("<")
    for n in ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16",
              "float32", "float64")
}  # fmt: skip


def encode(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Header + raw arrays. Raises ValueError naming an array of a dtype outside the plain number types."""
    specs, chunks = [], []
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.name not in _DTYPES:
            raise ValueError(f"state array {name!r} has dtype {a.dtype}, which the state format does not store")
        a = np.ascontiguousarray(a, _DTYPES[a.dtype.name])
        specs.append([name, a.dtype.name, list(a.shape)])
        chunks.append(a.tobytes())
    header = msgpack.packb({"format": FORMAT, "v": VERSION, "meta": dict(meta), "arrays": specs})
    return b"".join([struct.pack("<I", len(header)), header, *chunks])


def decode(blob: bytes | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of `encode`'s bytes; ValueError for anything else (sizes checked before parsing)."""
    data = memoryview(blob).cast("B")
    if len(data) < 4:
        raise ValueError(f"env state bytes are too short ({len(data)} B)")
    (n,) = struct.unpack_from("<I", data)
    if n > MAX_HEADER_BYTES or 4 + n > len(data):
        raise ValueError(f"env state header length {n} does not fit the {len(data)} bytes given")
    try:
        header = msgpack.unpackb(bytes(data[4 : 4 + n]), raw=False, strict_map_key=True)
    except Exception as err:  # msgpack raises several types for junk
        raise ValueError(f"env state header is not msgpack: {type(err).__name__}: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"not serl_gs env state bytes (format {fmt!r})")
    if header.get("v") != VERSION:
        raise ValueError(f"env state version {header.get('v')!r}; this serl_gs reads version {VERSION}")
    arrays, offset = {}, 4 + n
    for spec in header.get("arrays", []):
        name, dtype, shape = spec
        if dtype not in _DTYPES or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise ValueError(f"env state array {name!r} has a bad spec {spec!r}")
        size = _DTYPES[dtype].itemsize * int(np.prod(shape, dtype=np.int64))
        if offset + size > len(data):
            raise ValueError(f"env state array {name!r} runs past the end of the bytes")
        arrays[name] = np.frombuffer(data[offset : offset + size], _DTYPES[dtype]).reshape(shape).copy()
        offset += size
    if offset != len(data):
        raise ValueError(f"env state bytes have {len(data) - offset} trailing bytes")
    return header["meta"], arrays


# ---- the vector env's rows --------------------------------------------------------------------------------
def per_env_paths(reset_fn, state, num_envs: int) -> set[str]:
    """Paths of `state`'s leaves that hold one row per env. `reset_fn(keys [k, 2])` builds a batch; traced at a
    batch of num_envs + 1, per-env leaves grow by one row, buffers shared by all envs (MJX-Warp's contacts)
    do not."""
    import jax

    grown = jax.eval_shape(reset_fn, jax.ShapeDtypeStruct((num_envs + 1, 2), np.uint32))
    return {
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(grown)[0]
        if leaf.shape[:1] == (num_envs + 1,)
    }


def state_rows(state, paths: set[str], env_ids: np.ndarray, prefix: str = "state") -> dict[str, np.ndarray]:
    """{prefix + path: rows env_ids of that leaf} for the per-env leaves of a pytree."""
    import jax

    return {
        prefix + jax.tree_util.keystr(path): np.asarray(leaf)[env_ids]
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        if jax.tree_util.keystr(path) in paths
    }


def with_rows(state, paths: set[str], env_ids: np.ndarray, arrays: Mapping[str, np.ndarray], prefix: str = "state"):
    """`state` with rows env_ids of each per-env leaf replaced by arrays[prefix + path]; a missing, extra or
    misshapen array raises ValueError naming it."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    wanted = {prefix + jax.tree_util.keystr(p) for p, _ in leaves if jax.tree_util.keystr(p) in paths}
    given = {k for k in arrays if k.startswith(prefix)}
    if wanted != given:
        raise ValueError(
            f"env state does not fit this env: missing {sorted(wanted - given)}, unexpected {sorted(given - wanted)}"
        )
    out = []
    for path, leaf in leaves:
        name = prefix + jax.tree_util.keystr(path)
        if name in wanted:
            rows = arrays[name]
            if rows.dtype != leaf.dtype or rows.shape != (len(env_ids), *leaf.shape[1:]):
                raise ValueError(
                    f"env state array {name!r} is {rows.dtype} {rows.shape}, this env needs {leaf.dtype} "
                    f"{(len(env_ids), *leaf.shape[1:])}"
                )
            if isinstance(leaf, np.ndarray):
                leaf = leaf.copy()
                leaf[env_ids] = rows
            else:
                leaf = jnp.asarray(leaf).at[jnp.asarray(env_ids)].set(jnp.asarray(rows))
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


def check_env_ids(env_ids, num_envs: int) -> np.ndarray:
    """env_ids (None: all) as a sorted-as-given int64 array; ValueError naming ids out of range or repeated."""
    ids = np.arange(num_envs) if env_ids is None else np.asarray(env_ids, np.int64).reshape(-1)
    if ids.size == 0 or (ids < 0).any() or (ids >= num_envs).any() or len(np.unique(ids)) != len(ids):
        raise ValueError(f"env_ids must be distinct ids in [0, {num_envs}), got {env_ids!r}")
    return ids


def save_vector_env(env, env_ids=None) -> bytes:
    """`SerlVectorEnv.get_state`: rows env_ids (None: all) of the batch state, its last observations and, on
    MuJoCo C, the engine's state."""
    if env.state is None:
        raise RuntimeError("call reset() before get_state()")
    ids = check_env_ids(env_ids, env.num_envs)
    batch = env._batch
    arrays = state_rows(env.state, per_env_paths(batch.reset_fn, env.state, env.num_envs), ids)
    arrays.update(state_rows(env._obs, _obs_paths(env), ids, prefix="obs/"))
    if env._action_history is not None:  # action latency: the actions still to be applied
        arrays["latency/history"] = np.asarray(env._action_history)[:, ids].swapaxes(0, 1)
    if hasattr(batch, "physics"):  # MuJoCo C: the engine's full physics state and warm start
        state, warmstart = batch.physics.rows(ids)
        arrays.update({"mujoco/state": state, "mujoco/warmstart": warmstart})
    return encode(_identity(env) | {"env_ids": ids.tolist()}, arrays)


def restore_vector_env(env, blob: bytes, env_ids=None) -> list[int]:
    """`SerlVectorEnv.set_state`: writes the saved rows into envs env_ids (None: the ids they were saved from);
    returns the ids written. An env never reset is reset first (seed 0) to build its batch."""
    meta, arrays = decode(blob)
    want = _identity(env)
    for key, value in want.items():
        if meta.get(key) != value:
            raise ValueError(f"env state is for {key}={meta.get(key)!r}, this env has {key}={value!r}")
    ids = check_env_ids(meta["env_ids"] if env_ids is None else env_ids, env.num_envs)
    if len(ids) != len(meta["env_ids"]):
        raise ValueError(f"env state holds {len(meta['env_ids'])} envs, env_ids names {len(ids)}")
    if env.state is None:
        env.reset(seed=0)
    batch = env._batch
    paths = per_env_paths(batch.reset_fn, env.state, env.num_envs)
    state = with_rows(env.state, paths, ids, {k: v for k, v in arrays.items() if k.startswith("state")})
    obs = with_rows(env._obs, _obs_paths(env), ids, arrays, prefix="obs/")
    if env._action_history is not None:
        import jax.numpy as jnp

        rows = arrays.get("latency/history")
        want = (len(ids), *env._action_history.shape[:1], *env._action_history.shape[2:])
        if rows is None or rows.shape != want:
            raise ValueError(f"env state has no action history of shape {want} for this env's latency")
        env._action_history = env._action_history.at[:, jnp.asarray(ids)].set(jnp.asarray(rows.swapaxes(0, 1)))
    if hasattr(batch, "physics"):
        batch.physics.set_rows(ids, arrays["mujoco/state"], arrays["mujoco/warmstart"])
    env._state, env._obs, env._stepped = state, dict(obs), None
    batch.restored(ids, state)
    return ids.tolist()


def _identity(env) -> dict[str, Any]:
    """What must match between the env saved and the env restored."""
    return {
        "task": type(env.task).__name__,
        "task_config": repr(env.task.config),
        "physics": env.physics,
        "mjx_impl": env.mjx_impl,
    }


def _obs_paths(env) -> set[str]:
    return {f"[{k!r}]" for k in env._obs}
