"""The actor's data path (serl_gs.nodes.adder): env steps to records with extras, a send that hears a stop."""

from __future__ import annotations

import threading

import numpy as np

from serl_gs.nodes.adder import Adder, EnvStep


class FakeClient:
    """Takes batches like a TransitionClient; the first `refusals` sends time out (no credit)."""

    def __init__(self, refusals: int = 0, stop: threading.Event | None = None):
        self.refusals, self.stop_after_refusals = refusals, stop
        self.sent: list[tuple[dict, int]] = []

    def send(self, records, param_version):
        if self.refusals:
            self.refusals -= 1
            if self.refusals == 0 and self.stop_after_refusals is not None:
                self.stop_after_refusals.set()
            raise TimeoutError("no credit")
        self.sent.append((records, param_version))


def _obs(values):
    return {"state": np.asarray(values, np.float32)[:, None].repeat(3, 1)}


def test_adder_sends_first_records_then_steps_with_extras_and_policy_version():
    client, stop = FakeClient(refusals=2), threading.Event()
    adder = Adder(client, num_envs=2, action_dim=1, stop=stop)
    assert adder.add_first(_obs([0, 1]))  # waited through two refusals: no stop was asked for
    ended = np.array([True, False])
    infos = {"final_obs": _obs([9, 0]), "_final_obs": ended, "success": np.float32([1, 0])}
    step = EnvStep(_obs([5, 6]), np.float32([1, 2]), ended, np.zeros(2, bool), infos)
    assert adder.add(np.zeros((2, 1), np.float32), step, {"episode_return": np.float32([3, 4])}, param_version=7)
    (first, v0), (records, v1) = client.sent
    assert v0 == -1 and first["is_first"].all()
    assert v1 == 7 and records["env_index"].tolist() == [0, 1, 0]  # env 0's new episode starts after its end
    assert records["obs/state"][:, 0].tolist() == [9, 6, 5]
    assert records["extras/episode_return"].tolist() == [3, 4, 0]
    assert adder.records_added == 2 + 3


def test_adder_gives_up_when_stopped_while_the_learner_withholds_credit():
    stop = threading.Event()
    client = FakeClient(refusals=3, stop=stop)  # the stop comes while send waits for credit
    adder = Adder(client, num_envs=2, action_dim=1, stop=stop)
    assert not adder.add_first(_obs([0, 1]))
    assert client.sent == [] and adder.records_added == 0
