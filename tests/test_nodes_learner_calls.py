"""The learner's fused calls keep the rate limiter's and publishing's meaning; training ends by progress (training
success or training return) and says why. Records go straight into the learner (no actor): the loop's bookkeeping
is what is checked here."""

from __future__ import annotations

import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.learner import Learner, LearnerConfig
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport import LearnerTransportConfig
from serl_gs.transport.config import port_layout

ENV = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=20, physics="mujoco")
TINY_AGENT = AgentConfig(hidden_dims=(8,), critic_ensemble_size=2, batch_size=8, critic_actor_ratio=2, n_step=2)


def _config(run_dir, **overrides) -> LearnerConfig:
    fields = dict(
        env=ENV,
        agent=TINY_AGENT,
        replay=ReplayConfig(capacity=1000),
        rate=RateLimiterConfig(utd=0.5, min_inserts=20, tolerance=3.0, auto=False),
        transport=LearnerTransportConfig(**port_layout(0)),
        run_dir=str(run_dir),
        publish_every=4,
        checkpoint_every=8,
        save_replay=False,
        log_every_s=3600.0,
    )
    return LearnerConfig(**{**fields, **overrides})


def _feed(learner: Learner, steps: int, start: int = 0) -> None:
    """`steps` steps of 2 envs' records (episodes of 10 steps), stored as if an actor had sent them."""
    rng = np.random.default_rng(start)
    spec = learner.obs_spec
    obs = lambda: {f"obs/{k}": rng.standard_normal((2, *s.shape)).astype(np.float32) for k, s in spec.items()}
    for t in range(start, start + steps):
        records = {
            "env_index": np.arange(2, dtype=np.int32),
            **obs(),
            "action": rng.uniform(-1, 1, (2, learner.action_dim)).astype(np.float32),
            "reward": rng.standard_normal(2).astype(np.float32),
            "terminated": np.zeros(2, bool),
            "truncated": np.full(2, t % 10 == 9),
            "is_first": np.full(2, t % 10 == 0),
        }
        learner._store("actor0", 0, records)


@pytest.mark.slow
def test_calls_of_k_updates_stay_within_the_rate_limit_and_publish_and_save_on_crossing(tmp_path):
    learner = Learner(_config(tmp_path / "run"))
    try:
        assert learner.updates_per_call == 4  # auto: one call per publish
        _feed(learner, 20)  # 36 transitions: the limiter allows 0.5 x (36 - 20) = 8 updates, +3 ahead
        for _ in range(20):
            learner.step()
        transitions, updates = learner.counters["transitions"], learner.counters["updates"]
        assert transitions == 36
        assert updates == 8  # a third call (to 12) would pass the tolerance: 12 - 8 > 3
        assert learner._published_version == 8
        assert learner.persistence.checkpoints.latest_step() == 8
        _feed(learner, 5, start=20)  # 8 more transitions: 4 more updates owed
        for _ in range(20):
            learner.step()
        assert learner.counters["updates"] == 12  # 12 owed + 3: one more call of 4, not two
    finally:
        learner.close()


@pytest.mark.slow
def test_one_update_per_call_is_the_plain_path(tmp_path):
    learner = Learner(_config(tmp_path / "run", updates_per_call=1))
    try:
        _feed(learner, 20)
        for _ in range(30):
            learner.step()
        assert learner.counters["updates"] == 11  # 8 owed + 3 ahead
        assert learner._published_version == 8
    finally:
        learner.close()


@pytest.mark.parametrize(
    ("overrides", "window", "reason"),
    [
        (dict(stop_success=0.75, success_window=4), [1.0, 0.0, 1.0, 1.0], "success"),
        pytest.param(dict(stop_success=0.75, success_window=4, max_updates=4), [1.0, 0.0, 1.0], "max_updates",
                     marks=pytest.mark.slow),
        pytest.param(dict(stop_success=0.75, success_window=4, max_seconds=0.5), [1.0, 0.0, 0.0, 1.0],
                     "max_seconds", marks=pytest.mark.slow),
    ],
    ids=["success", "update_budget", "wall_clock_cap"],
)
def test_training_ends_by_progress_or_budget_and_says_which(tmp_path, overrides, window, reason):
    learner = Learner(_config(tmp_path / "run", **overrides))
    try:
        _feed(learner, 20)
        learner.success_window.extend(window)
        final = learner.run()
    finally:
        learner.close()
    assert final["stop_reason"] == reason
    full = len(window) == 4
    assert final["training_success"] == (np.mean(window) if full else None)
    if reason == "success":
        assert final["updates"] == 0
    if reason == "max_updates":
        assert final["updates"] == 4


@pytest.mark.parametrize(
    ("overrides", "returns", "reason"),
    [
        (dict(stop_return=800.0, success_window=4), [900.0, 700.0, 850.0, 800.0], "return"),
        pytest.param(dict(stop_return=800.0, success_window=4, max_updates=4), [900.0, 700.0, 850.0, 700.0],
                     "max_updates", marks=pytest.mark.slow),
        pytest.param(dict(stop_return=800.0, success_window=4, max_updates=4), [900.0, 900.0, 900.0],
                     "max_updates", marks=pytest.mark.slow),
    ],
    ids=["return_reached", "mean_below", "window_not_full"],
)  # fmt: skip
def test_training_ends_at_a_mean_training_return_once_the_window_is_full(tmp_path, overrides, returns, reason):
    learner = Learner(_config(tmp_path / "run", **overrides))
    try:
        _feed(learner, 20)
        learner.return_window.extend(returns)
        final = learner.run()
    finally:
        learner.close()
    assert final["stop_reason"] == reason
    full = len(returns) == 4
    assert final["training_return"] == (np.mean(returns) if full else None)
    assert final["training_success"] is None  # the return window is its own: success stays unreported
    assert final["updates"] == (0 if reason == "return" else 4)


def test_with_stop_on_eval_training_ends_at_the_eval_envs_window_not_the_training_one(tmp_path):
    learner = Learner(_config(tmp_path / "run", stop_return=800.0, stop_on="eval", eval_window=2))
    try:
        _feed(learner, 20)
        learner.eval_return_window.extend([790.0, 820.0])  # mean 805; no training episode has ended
        final = learner.run()
    finally:
        learner.close()
    assert (final["stop_reason"], final["updates"]) == ("return", 0)
    assert final["eval_return"] == 805.0 and final["training_return"] is None
    with pytest.raises(ValueError, match="stop_on must be 'training' or 'eval', got 'greedy'"):
        _config(tmp_path / "run2", stop_on="greedy")


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_stop_return_names_a_bad_value(tmp_path, value):
    with pytest.raises(ValueError, match=rf"stop_return must be a finite return >= 0 \(0 = off\), got {value}"):
        _config(tmp_path / "run", stop_return=value)
