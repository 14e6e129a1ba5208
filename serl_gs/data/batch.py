"""The batch the learner trains on: transitions rebuilt by the replay from stored frames."""

from __future__ import annotations

import flax.struct
import jax


@flax.struct.dataclass
class Batch:
    """Transitions with leading dims `[..., B]` (the replay samples `[U, B]`: U minibatches of B).

    Observation dicts use the env's names ("state", "pixels/<camera>"). `terminated` masks the bootstrap;
    truncation is not termination, so truncated transitions carry terminated=False and the critic bootstraps.
    """

    obs: dict[str, jax.Array]  # {"state": [..., B, d] float32, "pixels/<cam>": [..., B, H, W, 3] uint8}
    action: jax.Array  # [..., B, A] float32
    reward: jax.Array  # [..., B] float32
    terminated: jax.Array  # [..., B] bool
    next_obs: dict[str, jax.Array]  # like obs
    # Per-transition bootstrap factor (n-step returns: discount^m * (1 - terminated), see data.sampling);
    # None: the loss bootstraps with its own discount * (1 - terminated), the 1-step transition.
    discount: jax.Array | None = None  # [..., B] float32
    # Which rows came from the demo buffer (RLPD's mixed batches, serl_gs.demos.mixing); None: no demo rows. The
    # temperature fits the policy's entropy on the other rows only (agents.losses.temperature_loss).
    demo: jax.Array | None = None  # [..., B] bool
