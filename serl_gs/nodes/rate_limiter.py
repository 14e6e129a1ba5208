"""Keeps the learner's updates per inserted transition near a target (Reverb's samples-per-insert idea).

Let `lag = utd * (transitions - min_inserts) - updates`: how many updates the learner owes the data.
- The learner may update while `lag >= 1 - tolerance` (it is not ahead of the data by more than tolerance);
- actors get credits while `lag <= tolerance` (the learner is not behind by more than tolerance).
Both conditions cannot be false together (tolerance >= 1/2), so nobody deadlocks: whoever is blocked is
waiting for the other, who is allowed to move.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RateLimiterConfig:
    utd: float = 1.0  # updates per inserted transition
    min_inserts: int = 1000  # transitions before the first update (--training_starts)
    tolerance: float = 100.0  # updates the learner may be ahead of or behind the target

    def __post_init__(self):
        if not self.utd > 0:
            raise ValueError(f"utd must be positive, got {self.utd}")
        if self.min_inserts < 0:
            raise ValueError(f"min_inserts must be >= 0, got {self.min_inserts}")
        if self.tolerance < 0.5:
            raise ValueError(f"tolerance must be >= 0.5 (or learner and actors could both wait), got {self.tolerance}")


class RateLimiter:
    def __init__(self, config: RateLimiterConfig):
        self.config = config

    def lag(self, transitions: int, updates: int) -> float:
        """Updates the learner owes the data (negative: it is ahead)."""
        c = self.config
        return c.utd * (transitions - c.min_inserts) - updates

    def can_update(self, transitions: int, updates: int) -> bool:
        if transitions < self.config.min_inserts:
            return False
        return self.lag(transitions, updates) >= 1.0 - self.config.tolerance

    def can_insert(self, transitions: int, updates: int) -> bool:
        if transitions < self.config.min_inserts:
            return True
        return self.lag(transitions, updates) <= self.config.tolerance
