"""Records built on the device and copied once equal the host-built ones row for row."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.data.device_records import build_step_records, copy_to_host, step_records_via_device
from serl_gs.data.records import step_records, with_extras


def _obs(values):  # state rows [v, -v], pixels filled with v
    values = np.asarray(values, np.float32)
    pixels = np.broadcast_to(values.astype(np.uint8)[:, None, None, None], (len(values), 2, 2, 3))
    return {"state": np.stack([values, -values], -1), "pixels/cam": np.ascontiguousarray(pixels)}


@pytest.mark.parametrize("ended", [[], [1], [0, 3]])
def test_device_records_equal_host_records(ended):
    n = 4
    done = np.isin(np.arange(n), ended)
    terminated, truncated = done & (np.arange(n) == 0), done & (np.arange(n) != 0)
    obs = _obs([10, 20, 30, 40])  # ended envs: already their new episode's first obs
    final = _obs(np.where(done, [91, 92, 93, 94], [10, 20, 30, 40]))
    infos = {"final_obs": final, "_final_obs": done}
    action = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    reward = np.float32([1, 2, 3, 4])
    success = np.float32([0, 1, 0, 1])
    want = with_extras(step_records(obs, action, reward, terminated, truncated, infos), n, {"success": success})

    jax_infos = {"final_obs": {k: jnp.asarray(v) for k, v in final.items()}, "_final_obs": jnp.asarray(done)}
    got = step_records_via_device(
        {k: jnp.asarray(v) for k, v in obs.items()},
        jnp.asarray(action),
        jnp.asarray(reward),
        jnp.asarray(terminated),
        jnp.asarray(truncated),
        jax_infos,
        resets=2,
        extras={"success": jnp.asarray(success), "unused": None},
    )
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_more_ended_envs_than_reset_rows_is_an_error():
    done = jnp.array([True, True, False])
    obs = {"state": jnp.zeros((3, 2))}
    built = build_step_records(obs, jnp.zeros((3, 1)), jnp.zeros(3), done, jnp.zeros(3, bool), obs, {}, resets=1)
    with pytest.raises(ValueError, match="2 envs ended in one step, more than the 1 rows for new episodes"):
        copy_to_host(built, 3)
