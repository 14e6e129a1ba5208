"""Checkpoint evaluation (serl_gs.nodes.evaluation): its statistics."""

from __future__ import annotations

import numpy as np

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
