"""The policy payload: what the learner ships to actors and eval, beside the networks it rebuilds.

One parameter message holds the policy's params plus what is needed to build its networks again: the
`AgentConfig`, the observation spec and the action size. So actors and eval build the same networks without
repeating the learner's flags; each side checks the observation spec its own env gives against the one the
networks were built for (`check_obs_spec`) and refuses a mismatch naming both. No pickle: msgpack via
`flax.serialization`, with a JSON header.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.agents.config import AgentConfig, EncoderConfig

PAYLOAD_FORMAT = "serl_gs.policy.v1"


def agent_config_to_dict(config: AgentConfig) -> dict[str, Any]:
    """JSON-ready (tuples as lists): for payload headers, checkpoint metas and logs."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def agent_config_from_dict(data: dict[str, Any]) -> AgentConfig:
    data = dict(data)
    encoder = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("encoder").items()})
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return AgentConfig(encoder=encoder, **fields)


def spec_to_jsonable(obs_spec: dict[str, jax.ShapeDtypeStruct]) -> dict[str, list]:
    return {k: [list(s.shape), np.dtype(s.dtype).name] for k, s in sorted(obs_spec.items())}


def spec_from_jsonable(data: dict[str, list]) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(tuple(shape), dtype) for k, (shape, dtype) in data.items()}


def check_obs_spec(expected: dict[str, list], obs_spec: dict[str, jax.ShapeDtypeStruct], who: str) -> None:
    got = spec_to_jsonable(obs_spec)
    if got != expected:
        raise ValueError(f"{who}: the env's observations {got} differ from the policy's {expected}")


def pack_policy(
    config: AgentConfig, obs_spec: dict, action_dim: int, policy_params: Any, task: dict[str, Any] | None = None
) -> bytes:
    """One parameter message: the policy's params plus what is needed to rebuild its networks, and the `task`
    (JSON: env id, observation mode, ...) it learns, so an actor of another task can refuse to start."""
    header = {
        "format": PAYLOAD_FORMAT,
        "agent_config": agent_config_to_dict(config),
        "obs_spec": spec_to_jsonable(obs_spec),
        "action_dim": int(action_dim),
        "task": task,
    }
    state = {"header": json.dumps(header), "params": flax.serialization.to_state_dict(jax.device_get(policy_params))}
    return flax.serialization.msgpack_serialize(state)


@dataclasses.dataclass
class PolicyPayload:
    agent_config: AgentConfig
    obs_spec: dict[str, list]
    action_dim: int
    params: Any  # nested dicts of jnp arrays
    task: dict[str, Any] | None = None  # what the learner trains on (see `pack_policy`), if it said


def unpack_policy(data: bytes) -> PolicyPayload:
    """Inverse of `pack_policy`; raises ValueError on anything that is not one."""
    try:
        state = flax.serialization.msgpack_restore(data)
        header = json.loads(state["header"])
    except Exception as e:  # noqa: BLE001 - any decoding failure means "not a policy message"
        raise ValueError(f"not a serl_gs policy message: {e}") from e
    if header.get("format") != PAYLOAD_FORMAT:
        raise ValueError(f"policy message format {header.get('format')!r}, expected {PAYLOAD_FORMAT!r}")
    params = jax.tree.map(jnp.asarray, state["params"])
    task = header.get("task")
    return PolicyPayload(
        agent_config_from_dict(header["agent_config"]),
        header["obs_spec"],
        int(header["action_dim"]),
        params,
        task if isinstance(task, dict) else None,
    )
