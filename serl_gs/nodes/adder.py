"""The actor's data path in one place: env steps -> records (with extras) -> the transport's sender.

Acme's adder shape: `add_first(obs)` after a reset, `add(action, next_step, extras)` after each step. Records
follow `serl_gs.data.records`; each batch carries the version of the policy that acted. Sending waits for the
learner's credit in short slices (the client's `block_timeout_s`), so a stop request is heard even while the
learner is away; both calls return False when stopped before their batch was taken.

A step larger than the transport's `max_message_bytes` (e.g. 128² images, or a third camera, at thousands of
envs) goes out as several batches, split along the env axis by `split_by_env`: each env's rows (its step record
and, where its episode ended, the next episode's first frame) stay together and in order, in exactly one part,
and each part carries `part=(index, count)` in its header. The learner inserts each part as it comes instead of
reassembling the step, and that is equivalent: the replay pairs records per (actor, session, env) stream and
never across envs, so a step's records reach every stream in the same order whether they arrive in one message
or in several; the transport delivers one actor's batches in order, exactly once, so a stream's parts of step t
are in before its part of step t+1. Nothing waits for a whole step, so no half step is ever held back; if an
actor dies between the parts of a step, the envs whose part arrived end one record later than the others,
which is what the replay already does with every stream of a stopped actor.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from serl_gs.data.records import Records, reset_records, step_records, with_extras


def split_by_env(records: Records, max_bytes: int) -> list[Records]:
    """`records` as consecutive env ranges whose array bytes each fit `max_bytes` (one part when all fit).

    Every env's rows go to exactly one part, in their original order; parts are as few as greedy packing by
    env gives. Raises ValueError naming the sizes when one env's own rows exceed `max_bytes`.
    """
    row_bytes = sum(v.nbytes // max(len(v), 1) for v in records.values())  # every field is [n, ...]
    n = len(records["env_index"])
    if row_bytes * n <= max_bytes:
        return [records]
    env = records["env_index"].astype(np.int64)
    rows_per_env = np.bincount(env)  # [E]: 1, or 2 where the env's episode ended this step
    cum = np.concatenate([[0], np.cumsum(rows_per_env * row_bytes)])  # bytes of envs [0, e)
    if int((rows_per_env * row_bytes).max()) > max_bytes:
        raise ValueError(
            f"one env's records take {int((rows_per_env * row_bytes).max())} bytes, more than max_message_bytes="
            f"{max_bytes}: raise the limit on both ends (actor and learner)"
        )
    bounds, lo = [0], 0
    while lo < len(rows_per_env):
        hi = int(np.searchsorted(cum, cum[lo] + max_bytes, side="right")) - 1  # the last env end that fits
        bounds.append(hi)
        lo = hi
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = np.flatnonzero((env >= lo) & (env < hi))  # in order: each env's rows keep their order
        if rows.size:
            parts.append({k: v[rows] for k, v in records.items()})
    return parts


class EnvStep(NamedTuple):
    """What a same-step-autoreset vector env's `step` returns: `EnvStep(*vec.step(actions))`."""

    obs: Mapping[str, Any]  # each [N, ...]
    reward: Any  # [N]
    terminated: Any  # [N] bool
    truncated: Any  # [N] bool
    infos: Mapping[str, Any]  # with "final_obs" / "_final_obs" where envs ended


class Adder:
    """Hands one actor's records to a `TransitionClient`; `records_added` counts what the sender took."""

    def __init__(self, client, num_envs: int, action_dim: int, stop: threading.Event):
        self._client = client
        self.num_envs, self.action_dim = num_envs, action_dim
        self._stop = stop
        self.records_added = 0
        self.split_steps = 0  # steps sent as more than one message
        # Clients without a limit (test doubles) take any size.
        self.max_message_bytes = getattr(client, "max_message_bytes", None)

    def add_first(self, obs: Mapping[str, Any]) -> bool:
        """Every env starts a stream with its first observation (no policy acted: version -1)."""
        return self._send(reset_records(obs, self.action_dim), param_version=-1)

    def add(
        self,
        action: Any,  # [N, A]: the actions that were stepped
        next_step: EnvStep,
        extras: Mapping[str, Any] | None = None,  # {name: [N] or [N, ...] per env}; None values are skipped
        *,
        param_version: int,
    ) -> bool:
        s = next_step
        records = step_records(s.obs, action, s.reward, s.terminated, s.truncated, s.infos)
        if extras:
            records = with_extras(records, self.num_envs, extras)
        return self._send(records, param_version)

    def add_records(self, records: Records, *, param_version: int) -> bool:
        """Sends a step's records built elsewhere (the actor builds them on the device: data.device_records)."""
        return self._send(records, param_version)

    def _send(self, records: Records, param_version: int) -> bool:
        if self.max_message_bytes is None:
            return self._send_part(records, param_version, None)
        parts = split_by_env(records, self.max_message_bytes)
        self.split_steps += len(parts) > 1
        for i, part in enumerate(parts):
            if not self._send_part(part, param_version, (i, len(parts)) if len(parts) > 1 else None):
                return False
        return True

    def _send_part(self, records: Records, param_version: int, part: tuple[int, int] | None) -> bool:
        while True:
            try:
                if part is None:
                    self._client.send(records, param_version)
                else:
                    self._client.send(records, param_version, part=part)
            except TimeoutError:  # no credit within block_timeout_s: listen for a stop, then wait again
                if self._stop.is_set():
                    return False
                continue
            self.records_added += len(records["env_index"])
            return True
