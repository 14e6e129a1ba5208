"""The actor's data path in one place: env steps -> records (with extras) -> the transport's sender.

Acme's adder shape: `add_first(obs)` after a reset, `add(action, next_step, extras)` after each step. Records
follow `serl_gs.data.records`; each batch carries the version of the policy that acted. Sending waits for the
learner's credit in short slices (the client's `block_timeout_s`), so a stop request is heard even while the
learner is away; both calls return False when stopped before their batch was taken.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from serl_gs.data.records import Records, reset_records, step_records, with_extras


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
        while True:
            try:
                self._client.send(records, param_version)
            except TimeoutError:  # no credit within block_timeout_s: listen for a stop, then wait again
                if self._stop.is_set():
                    return False
                continue
            self.records_added += len(records["env_index"])
            return True
