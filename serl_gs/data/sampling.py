"""Pure, traceable sampling from the replay's stored fields: uniform over linked slots, 1-step or n-step.

The replay's slots form forward chains per (actor, env) stream (`next_gap`, see `replay.py`). A transition
starts at a slot k with a link; its next record is j1 = k + next_gap[k]. An n-step transition follows the chain
up to n links: it stops early where the chain ends (an episode end: truncated records have no link; or the
stream's newest record, whose successor has not arrived) or where a record is terminal. With m <= n links
followed, j_1 .. j_m:

    action   = action[j1]                        (the action taken at obs[k])
    reward   = sum_{i=1..m} discount^(i-1) * reward[j_i]
    next_obs = obs[j_m]
    discount = discount^m * (1 - terminated[j_m])   (the bootstrap factor, carried in Batch.discount)

n = 1 gives the plain transition with Batch.discount left None (the loss uses its own discount), so the 1-step
path is unchanged. Everything here runs inside jit; `fields` are the replay's device arrays or host copies.
"""

from __future__ import annotations

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.data import frame_stack as frame_stack_lib
from serl_gs.data.batch import Batch
from serl_gs.data.records import is_image


def sample_slots(
    next_gap: jax.Array,  # [C] int32, 0 = no transition starts here
    key: jax.Array,
    num_batches: int,
    batch_size: int,
    prev_gap: jax.Array | None = None,  # [C] int32 backward links; needed when frame_stack > 1
    frame_stack: int = 1,
) -> tuple[jax.Array, jax.Array]:  # k, j: [U, B] slots of obs and of the next record
    """Uniform over linked slots (cumsum + searchsorted) whose frame stacks can be rebuilt (data.frame_stack);
    assumes at least one."""
    capacity = next_gap.shape[0]
    starts = next_gap > 0
    if frame_stack > 1:
        starts = starts & frame_stack_lib.stack_complete(prev_gap, frame_stack)
    cdf = jnp.cumsum(starts, dtype=jnp.int32)
    u = jax.random.randint(key, (num_batches, batch_size), 0, cdf[-1])
    k = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
    j = (k + next_gap[k]) % capacity
    return k, j


def follow_chain(
    fields: dict,  # "next_gap" [C], "reward" [C], "terminated" [C]
    j: jax.Array,  # [...] the first next record of each transition
    n_step: int,
    discount: float,
    xp: ModuleType = jnp,  # jnp inside jit; np for fields in host memory
) -> tuple[jax.Array, jax.Array, jax.Array]:  # last record j_m, discounted reward sum, bootstrap factor
    """Follows up to `n_step` links from j (see the module doc); a Python loop: n_step is small and static."""
    capacity = fields["next_gap"].shape[0]
    reward = fields["reward"][j]
    terminated = fields["terminated"][j]
    scale = xp.ones_like(reward)  # discount^(links followed - 1)
    last = j
    for _ in range(n_step - 1):
        gap = fields["next_gap"][last]
        go = (gap > 0) & ~terminated
        step_to = (last + gap) % capacity
        scale = xp.where(go, scale * np.float32(discount), scale)
        reward = reward + xp.where(go, scale * fields["reward"][step_to], np.float32(0.0))
        terminated = xp.where(go, fields["terminated"][step_to], terminated)
        last = xp.where(go, step_to, last)
    bootstrap = scale * np.float32(discount) * (1 - terminated.astype(reward.dtype))
    return last, reward, bootstrap


def gather(
    fields: dict,
    k: jax.Array,
    j: jax.Array,
    n_step: int = 1,
    discount: float = 1.0,
    xp: ModuleType = jnp,
    frame_stack: int = 1,
) -> Batch:
    """The Batch for transitions starting at slots k with first next record j (leading dims of k); with
    frame_stack > 1, cameras' obs and next_obs are the stacks ending at those slots (data.frame_stack)."""
    take = lambda stored, index: xp.take(stored, index, axis=0)

    def observations(slots):
        if frame_stack == 1:
            return {name: take(frames, slots) for name, frames in fields["obs"].items()}
        stacks = lambda frames: frame_stack_lib.gather_stacks(frames, fields["prev_gap"], slots, frame_stack, xp)
        return {
            name: stacks(frames) if is_image(name) else take(frames, slots)
            for name, frames in fields["obs"].items()
        }

    if n_step == 1:
        return Batch(
            obs=observations(k),
            action=take(fields["action"], j),
            reward=take(fields["reward"], j),
            terminated=take(fields["terminated"], j),
            next_obs=observations(j),
        )
    last, reward, bootstrap = follow_chain(fields, j, n_step, discount, xp)
    return Batch(
        obs=observations(k),
        action=take(fields["action"], j),
        reward=reward,
        terminated=take(fields["terminated"], last),
        next_obs=observations(last),
        discount=bootstrap,
    )


def sample_batch(
    fields: dict,
    key: jax.Array,
    num_batches: int,
    batch_size: int,
    n_step: int = 1,
    discount: float = 1.0,
    frame_stack: int = 1,
) -> Batch:
    """Uniform transitions from device-resident fields, leaves [num_batches, batch_size, ...]."""
    if n_step < 1:
        raise ValueError(f"n_step must be >= 1, got {n_step}")
    k, j = sample_slots(fields["next_gap"], key, num_batches, batch_size, fields["prev_gap"], frame_stack)
    return gather(fields, k, j, n_step, discount, frame_stack=frame_stack)
