"""The transport's configs (serl_gs.transport.config): defaults, validation naming the bad field, the port rule."""

from __future__ import annotations

import pytest

from serl_gs.transport.config import ActorTransportConfig, LearnerTransportConfig, port_layout


def test_defaults_bind_loopback_only():
    assert LearnerTransportConfig().bind == "127.0.0.1"
    assert ActorTransportConfig(actor_id="a").host == "127.0.0.1"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bind": ""}, "bind"),
        ({"transitions_port": 70000}, "transitions_port"),
        ({"params_port": 5588}, "must differ"),
        ({"credits_per_actor": 65}, "credits_per_actor"),
        ({"max_message_bytes": 10}, "max_message_bytes"),
        ({"socket_timeout_s": 0}, "socket_timeout_s"),
        ({"auth": "secret"}, "AuthConfig"),
    ],
)
def test_learner_config_validates(changes, message):
    with pytest.raises(ValueError, match=message):
        LearnerTransportConfig(**changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"actor_id": ""}, "actor_id"),
        ({"actor_id": "has space"}, "actor_id"),
        ({"overflow": "drop_newest"}, "overflow"),
        ({"transitions_port": 0}, "transitions_port"),
        ({"max_pending_batches": 0}, "max_pending_batches"),
        ({"block_timeout_s": -1.0}, "block_timeout_s"),
        ({"host": "a b"}, "host"),
    ],
)
def test_actor_config_validates(changes, message):
    base = {"actor_id": "a0"}
    base.update(changes)
    with pytest.raises(ValueError, match=message):
        ActorTransportConfig(**base)


def test_one_port_rule_for_both_ends():
    assert port_layout(5588) == {"transitions_port": 5588, "params_port": 5589, "params_snapshot_port": 5590}
    assert set(port_layout(0).values()) == {0}  # three free ports, each end asks its socket which
    learner = LearnerTransportConfig(**port_layout(6000))
    actor = ActorTransportConfig(actor_id="a", **port_layout(6000))
    assert (learner.params_port, actor.params_snapshot_port) == (6001, 6002)
    with pytest.raises(ValueError, match="base port must leave room"):
        port_layout(65534)
