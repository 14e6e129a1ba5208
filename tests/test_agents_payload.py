"""The policy payload the learner ships to actors (serl_gs.agents.payload)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.payload import (
    agent_config_from_dict,
    agent_config_to_dict,
    check_obs_spec,
    pack_policy,
    unpack_policy,
)


def test_policy_payload_carries_the_architecture_and_refuses_other_bytes():
    config = AgentConfig(hidden_dims=(8, 8), critic_ensemble_size=2)
    spec = {"state": jax.ShapeDtypeStruct((5,), np.float32)}
    params = {"actor": {"w": np.ones((5, 2), np.float32)}, "encoder": {}}
    payload = unpack_policy(pack_policy(config, spec, 1, params))
    assert payload.agent_config == config and payload.action_dim == 1
    np.testing.assert_array_equal(payload.params["actor"]["w"], params["actor"]["w"])
    check_obs_spec(payload.obs_spec, spec, "test")
    with pytest.raises(ValueError, match="differ from the policy's"):
        check_obs_spec(payload.obs_spec, {"state": jax.ShapeDtypeStruct((7,), np.float32)}, "test")
    with pytest.raises(ValueError, match="not a serl_gs policy message"):
        unpack_policy(b"\x80\x04not msgpack")


def test_agent_config_round_trips_through_json_dicts():
    config = AgentConfig(hidden_dims=(8, 4), encoder=EncoderConfig(channels=(4, 8), pretrained_path="/x.msgpack"))
    data = agent_config_to_dict(config)
    assert data["hidden_dims"] == [8, 4] and data["encoder"]["channels"] == [4, 8]
    assert agent_config_from_dict(data) == config
