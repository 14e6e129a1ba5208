"""One step's records built on the device and copied to the host in one transfer.

`step_records` (serl_gs.data.records) builds a step's records from host arrays: every observation comes to
the host (obs and final obs: twice the frames), is copied to substitute the final frames and copied again to
append the new episodes' first frames. At thousands of pixel envs that is hundreds of MB of host copies a
step. Here the same records are assembled by one jitted call where the arrays already are, at a fixed shape:

    rows 0 .. N-1         env i's record of this step (its true final obs where it ended)
    rows N .. N+R-1       the first obs of up to R = `resets` new episodes (env ids of ended envs, in order),
                          of which the first k (k = envs that ended) are real and the rest padding

and `copy_to_host` brings them over with one `jax.device_get` (the one blocking read of a step: what the
transport needs) and hands back views of the N + k real rows: the same dict `step_records` returns, row for
row (tests/test_data_device_records.py). The vector env's `resets_per_step` bounds k (serl_gs.vec_env), so R
is its value; more ended envs than R is an error, never silently dropped records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.data.records import EXTRAS_PREFIX, IMAGE_DTYPES, OBS_PREFIX, Records, image_prefix, validate_records

DeviceRecords = tuple[dict[str, jax.Array], jax.Array]  # (records [N + R, ...], ended count [])


@functools.partial(jax.jit, static_argnames="resets")
def build_step_records(
    obs: Mapping[str, jax.Array],  # each [N, ...]: after same-step autoreset
    action: jax.Array,  # [N, A]
    reward: jax.Array,  # [N]
    terminated: jax.Array,  # [N] bool
    truncated: jax.Array,  # [N] bool
    final_obs: Mapping[str, jax.Array],  # like obs; rows of ended envs hold their true final obs
    extras: Mapping[str, jax.Array],  # {name: [N, ...]} per env; the new episodes' rows get zeros
    resets: int,  # R: rows for new episodes' first obs
) -> DeviceRecords:
    """The step's records at [N + R] rows on the device, and how many envs ended (see the module doc)."""
    n = action.shape[0]
    done = jnp.logical_or(terminated, truncated)
    (first_ids,) = jnp.nonzero(done, size=resets, fill_value=n)
    source = jnp.minimum(first_ids, n - 1)  # padding rows copy env n-1's obs; they are cut on the host

    def pad(values: jax.Array, dtype) -> jax.Array:
        values = values.astype(dtype)
        return jnp.concatenate([values, jnp.zeros((resets, *values.shape[1:]), dtype)])

    records = {"env_index": jnp.concatenate([jnp.arange(n, dtype=jnp.int32), first_ids.astype(jnp.int32)])}
    for name, value in obs.items():
        prefix = image_prefix(name)
        dtype = IMAGE_DTYPES[prefix] if prefix else jnp.float32
        ended = done.reshape(done.shape + (1,) * (value.ndim - 1))
        this_step = jnp.where(ended, final_obs[name], value).astype(dtype)
        records[OBS_PREFIX + name] = jnp.concatenate([this_step, value[source].astype(dtype)])
    records["action"] = pad(action, jnp.float32)
    records["reward"] = pad(reward, jnp.float32)
    records["terminated"] = pad(terminated, bool)
    records["truncated"] = pad(truncated, bool)
    records["is_first"] = jnp.concatenate([jnp.zeros(n, bool), jnp.ones(resets, bool)])
    for name, value in extras.items():
        records[EXTRAS_PREFIX + name] = pad(value, value.dtype)
    return records, jnp.sum(done)


def copy_to_host(device_records: DeviceRecords, num_envs: int) -> Records:
    """The records of `build_step_records` on the host (one transfer), cut to their N + k real rows."""
    records, ended = jax.device_get(device_records)
    resets = len(records["env_index"]) - num_envs
    k = int(ended)
    if k > resets:
        raise ValueError(f"{k} envs ended in one step, more than the {resets} rows for new episodes")
    out = {key: np.asarray(value)[: num_envs + k] for key, value in records.items()}
    validate_records(out)
    return out


def step_records_via_device(
    obs: Mapping[str, Any],
    action: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    infos: Mapping[str, Any],
    resets: int,
    extras: Mapping[str, Any] | None = None,
) -> Records:
    """`step_records`' records (plus `extras` on the step's rows) built on the device and copied once."""
    num_envs = int(np.shape(action)[0])
    extras = {name: value for name, value in (extras or {}).items() if value is not None}
    built = build_step_records(
        obs, action, reward, terminated, truncated, infos.get("final_obs", obs), extras, resets=resets
    )
    return copy_to_host(built, num_envs)
