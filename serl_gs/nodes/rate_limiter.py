"""Keeps the learner's updates per inserted transition near a target (Reverb's samples-per-insert idea).

Let `lag = utd * (transitions - min_inserts) - updates`: how many updates the learner owes the data.
- The learner may update while `lag >= 1 - tolerance` (it is not ahead of the data by more than tolerance);
- actors get credits while `lag <= tolerance` (the learner is not behind by more than tolerance).
Both conditions cannot be false together (tolerance >= 1/2), so nobody deadlocks: whoever is blocked is
waiting for the other, who is allowed to move. With calls of K updates (the learner needs its last update
allowed, `lag - (K - 1) >= 1 - tolerance`), the learner waits only while `lag < K - tolerance` and actors
only while `lag > tolerance`: both at once needs K > 2 * tolerance, which the learner's config refuses.

The tolerance that keeps both sides busy (`tolerance_for`). Actors are granted credit while `lag <= T`; a grant
lets each of A actors put its window of c batches of B records in flight, up to `utd * B * c * A` updates of
work arriving at once. If the band [1 - T, T] the learner may work through between two grants is narrower than
that, every grant overshoots it: credits stop at once (the actors wait while the learner works the overshoot
down to T), then the learner works T down to 1 - T alone and idles while the next batches are being produced;
learner and actors take turns instead of overlapping (a fixed T = 200 against one 4,096-env batch at utd 0.25,
1,024 updates, did exactly this). So T = max(floor, (utd * B * c * A + 1) / 2, K / 2): the band holds one full
grant, and a call always fits. B is the largest batch seen so far: the tolerance only grows, and every value it
takes is >= 1/2 and >= K/2, so the no-deadlock argument above holds at every moment.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RateLimiterConfig:
    utd: float = 0.25  # updates per inserted transition (each update = the agent's critic_actor_ratio steps)
    min_inserts: int = 1000  # transitions in the replay before the first update (--training_starts)
    tolerance: float = 200.0  # updates the learner may be ahead of or behind the target (with `auto`: the floor)
    # Grow the tolerance with the largest batch seen, the credits and the actors (`tolerance_for`;
    # docs/scale.md: the tolerance rule).
    auto: bool = True

    def __post_init__(self):
        if not self.utd > 0:
            raise ValueError(f"utd must be positive, got {self.utd}")
        if self.min_inserts < 0:
            raise ValueError(f"min_inserts must be >= 0, got {self.min_inserts}")
        if self.tolerance < 0.5:
            raise ValueError(f"tolerance must be >= 0.5 (or learner and actors could both wait), got {self.tolerance}")


def tolerance_for(
    utd: float, batch_records: int, credits_per_actor: int, actors: int, updates_per_call: int, floor: float
) -> float:
    """The tolerance that holds one credit grant's work and one call (module doc): never below `floor`."""
    if batch_records < 0 or credits_per_actor < 0 or actors < 0 or updates_per_call < 1:
        raise ValueError(
            f"batch_records, credits_per_actor and actors must be >= 0 and updates_per_call >= 1, got "
            f"{batch_records}, {credits_per_actor}, {actors}, {updates_per_call}"
        )
    grant = utd * batch_records * max(credits_per_actor, 1) * max(actors, 1)
    return max(float(floor), (grant + 1.0) / 2.0, updates_per_call / 2.0)


class RateLimiter:
    """`can_update` / `can_insert` (module doc). With `config.auto`, call `observe_batch` for every batch stored
    (from any thread: the tolerance is one float that only grows) so `tolerance` follows `tolerance_for`."""

    def __init__(self, config: RateLimiterConfig, *, credits_per_actor: int = 1, updates_per_call: int = 1):
        self.config = config
        self.credits_per_actor, self.updates_per_call = credits_per_actor, updates_per_call
        self.tolerance = float(config.tolerance)
        self._largest_batch = 0
        self._actors: set[str] = set()
        self._actors_counted = 0

    def observe_batch(self, actor: str, records: int, max_actors: int = 1 << 16) -> None:
        """Notes a stored batch: with `auto`, the tolerance follows the largest batch and the actors seen."""
        if not self.config.auto:
            return
        if len(self._actors) < max_actors:
            self._actors.add(actor)
        if records <= self._largest_batch and len(self._actors) == self._actors_counted:
            return  # nothing that would raise the tolerance
        self._largest_batch, self._actors_counted = max(self._largest_batch, records), len(self._actors)
        c = self.config
        self.tolerance = max(self.tolerance, tolerance_for(
            c.utd, self._largest_batch, self.credits_per_actor, len(self._actors), self.updates_per_call, c.tolerance
        ))  # fmt: skip

    def lag(self, transitions: int, updates: int) -> float:
        """Updates the learner owes the data (negative: it is ahead)."""
        c = self.config
        return c.utd * (transitions - c.min_inserts) - updates

    def can_update(self, transitions: int, updates: int) -> bool:
        if transitions < self.config.min_inserts:
            return False
        return self.lag(transitions, updates) >= 1.0 - self.tolerance

    def can_insert(self, transitions: int, updates: int) -> bool:
        if transitions < self.config.min_inserts:
            return True
        return self.lag(transitions, updates) <= self.tolerance
