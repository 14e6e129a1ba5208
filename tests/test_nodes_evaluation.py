"""Checkpoint evaluation (serl_gs.nodes.evaluation): its statistics."""

from __future__ import annotations

import numpy as np

from serl_gs.nodes.evaluation import summarize


def test_eval_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 1.0, 1.0])
    assert s["episodes"] == 4 and s["return_mean"] == 2.5 and s["success_rate"] == 0.75
    np.testing.assert_allclose(s["return_std"], np.std([1, 2, 3, 4], ddof=1))
    np.testing.assert_allclose(s["return_ci95"], 1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
