"""Checkpoint evaluation (serl_gs.nodes.evaluation): its statistics."""

from __future__ import annotations

import numpy as np
import pytest

from serl_gs.nodes.evaluation import summarize


def test_eval_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 1.0, 1.0])
    assert s["episodes"] == 4 and s["return_mean"] == 2.5 and s["success_rate"] == 0.75
    np.testing.assert_allclose(s["return_std"], np.std([1, 2, 3, 4], ddof=1))
    np.testing.assert_allclose(s["return_ci95"], 1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)


def test_policy_frames_video_shows_the_newest_frame_of_each_stack_enlarged():
    from serl_gs.nodes.evaluation import _policy_frames

    stacks = np.zeros((3, 4, 4, 9), np.uint8)  # 3 envs, 4x4 images, 3 frames: oldest first
    stacks[..., 6:] = np.arange(3, dtype=np.uint8)[:, None, None, None] * 30 + 30  # the newest frame per env
    frame = _policy_frames({"pixels/fixed": stacks, "state": np.zeros((3, 2))}, 2, 16, np.array([False, True, False]))
    assert frame.shape == (16, 32, 3)  # 2 envs side by side, 4x enlarged
    assert (frame[:, :16] == 30).all() and (frame[:, 16:] == 60 // 3).all()  # the finished env faded


@pytest.mark.slow  # a learner's init and two evals: ~15 s on a busy 2-core machine
def test_stochastic_eval_samples_the_policy_and_says_so(tmp_path):
    """The same checkpoint, evaluated by its mean action and by samples (`stochastic`): the deterministic eval is
    a function of the checkpoint and the seed; the sampled one acts otherwise (an untrained policy's std is ~1)."""
    from serl_gs.agents.config import AgentConfig
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.nodes.evaluation import EvalConfig, evaluate
    from serl_gs.nodes.learner import Learner, LearnerConfig
    from serl_gs.transport import LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    env = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=20, physics="mujoco")
    agent = AgentConfig(hidden_dims=(8,), critic_ensemble_size=2, batch_size=8)
    learner = Learner(LearnerConfig(env=env, agent=agent, transport=LearnerTransportConfig(**port_layout(0)),
                                    run_dir=str(tmp_path / "run"), save_replay=False))  # fmt: skip
    try:
        learner.save()
    finally:
        learner.close()
    run = lambda stochastic, out: evaluate(EvalConfig(
        checkpoint=str(tmp_path / "run"), num_envs=2, episodes=2, video_episodes=0, physics="mujoco",
        out_dir=str(tmp_path / out), stochastic=stochastic,
    ))  # fmt: skip
    mean_a, mean_b, sampled = run(False, "a"), run(False, "b"), run(True, "s")
    assert mean_a["deterministic"] is True and sampled["deterministic"] is False
    assert mean_a["return_mean"] == mean_b["return_mean"]
    assert sampled["return_mean"] != mean_a["return_mean"]
