"""The rate limiter (serl_gs.nodes.rate_limiter): the updates-per-transition ratio, never a deadlock."""

from __future__ import annotations

import collections

import pytest

from serl_gs.nodes.rate_limiter import RateLimiter, RateLimiterConfig, tolerance_for


def test_rate_limiter_holds_the_ratio_and_never_blocks_both_sides():
    limiter = RateLimiter(RateLimiterConfig(utd=0.5, min_inserts=100, tolerance=10, auto=False))
    assert not limiter.can_update(99, 0) and limiter.can_insert(99, 0)
    for inserted in range(0, 2000, 7):
        for updates in range(0, 1000, 13):
            assert limiter.can_update(inserted, updates) or limiter.can_insert(inserted, updates)
    # Far behind the data: the learner may update, actors must wait; far ahead: the reverse.
    assert limiter.can_update(1100, 100) and not limiter.can_insert(1100, 100)
    assert not limiter.can_update(200, 100) and limiter.can_insert(200, 100)
    with pytest.raises(ValueError, match="tolerance must be >= 0.5"):
        RateLimiterConfig(tolerance=0.1)


def test_tolerance_rule_holds_one_credit_grant_and_one_call():
    # One 4,096-env batch at utd 0.25 is 1,024 updates of work; 8 credits put 8 of them in flight: 8,192 updates.
    # The band [1 - T, T] must hold them: T = (8,192 + 1) / 2.
    assert tolerance_for(0.25, 4096, 8, 1, 10, floor=200.0) == 4096.5
    assert tolerance_for(0.25, 4096, 8, 2, 10, floor=200.0) == 8192.5  # two actors, two windows
    assert tolerance_for(0.25, 16, 8, 1, 10, floor=200.0) == 200.0  # small batches: the floor
    assert tolerance_for(1.0, 1, 1, 1, 500, floor=1.0) == 250.0  # a call of 500 updates must fit: K / 2
    with pytest.raises(ValueError, match="updates_per_call >= 1"):
        tolerance_for(0.25, 16, 8, 1, 0, floor=1.0)


def test_auto_tolerance_grows_with_the_largest_batch_and_the_actors_only():
    limiter = RateLimiter(RateLimiterConfig(utd=0.5, tolerance=10.0, auto=True), credits_per_actor=2)
    limiter.observe_batch("a0", 100)
    assert limiter.tolerance == (0.5 * 100 * 2 + 1) / 2
    limiter.observe_batch("a0", 10)  # a smaller batch: unchanged
    assert limiter.tolerance == 50.5
    limiter.observe_batch("a1", 10)  # a second actor: two windows of the largest batch
    assert limiter.tolerance == (0.5 * 100 * 2 * 2 + 1) / 2
    fixed = RateLimiter(RateLimiterConfig(utd=0.5, tolerance=10.0, auto=False))
    fixed.observe_batch("a0", 100)
    assert fixed.tolerance == 10.0


def _simulate(limiter: RateLimiter, batch: int, step_ticks: int, updates_per_tick: int, delay: int = 3,
              credits: int = 8, ticks: int = 4000) -> tuple[float, float, float]:  # fmt: skip
    """One actor and one learner in ticks, credits and batches `delay` ticks on the way each; returns the learner's
    idle fraction, the actor's credit-wait fraction, and the fraction of ticks with both, after a warm-up."""
    transitions = updates = unacked = 0
    arriving, acks = collections.deque(), collections.deque()  # (tick, records), tick
    heard = collections.deque([(0, True)])  # credit as the actor hears it, `delay` ticks late
    producing, ready, idle, wait, both = step_ticks, False, 0, 0, 0
    for t in range(ticks):
        while arriving and arriving[0][0] <= t:
            transitions += arriving.popleft()[1]
            limiter.observe_batch("a0", batch)
            acks.append(t + delay)
        while acks and acks[0] <= t:
            acks.popleft()
            unacked -= 1
        learner_idle = True
        for _ in range(updates_per_tick):
            if limiter.can_update(transitions, updates):
                updates, learner_idle = updates + 1, False
        heard.append((t + delay, limiter.can_insert(transitions, updates)))
        while len(heard) > 1 and heard[1][0] <= t:
            heard.popleft()
        has_credit = heard[0][1] and unacked < credits
        if not ready:
            producing -= 1
            ready = producing <= 0
        actor_waits = ready and not has_credit
        if ready and has_credit:
            arriving.append((t + delay, batch))
            unacked, ready, producing = unacked + 1, False, step_ticks
        if t >= ticks // 4:
            idle, wait, both = idle + learner_idle, wait + actor_waits, both + (learner_idle and actor_waits)
    n = ticks - ticks // 4
    return idle / n, wait / n, both / n


def test_auto_tolerance_keeps_learner_and_actor_overlapping_at_4096_envs():
    # A 4,096-env actor making one batch per 10 ticks at utd 0.25 asks for 102.4 updates per tick.
    def run(auto: bool, updates_per_tick: int) -> tuple[float, float, float]:
        config = RateLimiterConfig(utd=0.25, min_inserts=1000, tolerance=200.0, auto=auto)
        return _simulate(RateLimiter(config, credits_per_actor=8), 4096, 10, updates_per_tick)

    for updates_per_tick in (90, 100, 110):
        fixed, auto = run(False, updates_per_tick), run(True, updates_per_tick)
        assert fixed[2] == auto[2] == 0.0  # never the learner idle while the actor waits for credit, either way
        # The fixed tolerance (200 < one batch's 1,024 updates) makes them take turns: more time lost in all.
        assert auto[0] + auto[1] < fixed[0] + fixed[1]
    # Learner-bound (90 of the 102.4 updates per tick asked for): the actor waits exactly the shortfall, the learner
    # never idles; the fixed tolerance idles the learner besides.
    idle, wait, _ = run(True, 90)
    assert idle == 0.0 and abs(wait - (1 - 90 / 102.4)) < 0.01
    assert run(False, 100)[0] > 0.05 and run(True, 100)[0] == 0.0
