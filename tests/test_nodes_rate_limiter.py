"""The rate limiter (serl_gs.nodes.rate_limiter): the updates-per-transition ratio, never a deadlock."""

from __future__ import annotations

import pytest

from serl_gs.nodes.rate_limiter import RateLimiter, RateLimiterConfig


def test_rate_limiter_holds_the_ratio_and_never_blocks_both_sides():
    limiter = RateLimiter(RateLimiterConfig(utd=0.5, min_inserts=100, tolerance=10))
    assert not limiter.can_update(99, 0) and limiter.can_insert(99, 0)
    for inserted in range(0, 2000, 7):
        for updates in range(0, 1000, 13):
            assert limiter.can_update(inserted, updates) or limiter.can_insert(inserted, updates)
    # Far behind the data: the learner may update, actors must wait; far ahead: the reverse.
    assert limiter.can_update(1100, 100) and not limiter.can_insert(1100, 100)
    assert not limiter.can_update(200, 100) and limiter.can_insert(200, 100)
    with pytest.raises(ValueError, match="tolerance must be >= 0.5"):
        RateLimiterConfig(tolerance=0.1)
