"""Frame history: the last k frames of each camera as the policy's observation, each frame stored once.

A stacked camera observation "pixels/<camera>" is [..., H, W, 3k]: k RGB frames along channels, oldest first.
At an episode's first frame there is no history yet and that frame is repeated k times (DrQ, MuJoCo Playground).

Policy side (actor, eval): `FrameStacker` keeps each env's last k frames and turns the vector env's single frames
into stacks, restarting an env's history where its episode restarted (reset, or same-step autoreset).

Replay side: records carry single frames; the replay keeps one backward link per slot, `prev_gap`:
    > 0   slots back to the previous record of the same episode (its frame is still stored there)
    0     the record is its episode's first frame
    -1    the predecessor is unknown or its slot has been rewritten
A stack for slot c is c's frame and up to k-1 predecessors along the links; at a link of 0 the walk stops and
the earliest frame repeats, exactly as `FrameStacker` did for the policy. When a slot is rewritten its old
successor's link becomes -1 (the storage does it in the same write), so a positive link always points at the
true predecessor. A slot whose walk meets -1 before k frames (only a stream's oldest records in the ring) cannot
be stacked as the policy saw it: `stack_complete` is False there and the sampler never picks it. A next
observation's stack is then always complete too: its walk goes through the transition's own obs slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.data.records import is_image

NO_PREDECESSOR = -1  # prev_gap of a record whose predecessor is unknown or overwritten


def stacked_shape(frame_shape: tuple[int, ...], frame_stack: int) -> tuple[int, ...]:
    """[H, W, 3] -> [H, W, 3k]."""
    *hw, c = frame_shape
    return (*hw, c * frame_stack)


def stack_obs_spec(obs_spec: Mapping[str, Any], frame_stack: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The policy's observation shapes from the env's single-frame shapes: cameras get k frames each."""
    if frame_stack < 1:
        raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
    return {
        name: jax.ShapeDtypeStruct(
            stacked_shape(tuple(s.shape), frame_stack) if is_image(name) else tuple(s.shape), s.dtype
        )
        for name, s in obs_spec.items()
    }


def stack_slots(prev_gap, slots, frame_stack: int, xp: ModuleType = jnp):  # -> [..., k] oldest first
    """The slots of the frames in each stack ending at `slots` [...] (see the module doc)."""
    capacity = prev_gap.shape[0]
    chain = [slots]
    for _ in range(frame_stack - 1):
        gap = prev_gap[chain[-1]]
        chain.append(xp.where(gap > 0, (chain[-1] - gap) % capacity, chain[-1]))
    return xp.stack(chain[::-1], axis=-1)


def stack_complete(prev_gap, frame_stack: int, xp: ModuleType = jnp):  # -> [C] bool
    """Whether the stack ending at each slot can be rebuilt exactly (its walk meets no -1)."""
    capacity = prev_gap.shape[0]
    if frame_stack == 1:
        return xp.ones((capacity,), bool)
    current = xp.arange(capacity)
    ok = prev_gap >= 0
    for _ in range(frame_stack - 2):  # the k-th frame back needs no link of its own
        gap = prev_gap[current]
        current = xp.where(gap > 0, (current - gap) % capacity, current)
        ok = ok & (prev_gap[current] >= 0)
    return ok


def gather_stacks(frames, prev_gap, slots, frame_stack: int, xp: ModuleType = jnp):
    """frames [C, H, W, c] at stacks ending at slots [...] -> [..., H, W, c*k], oldest frame first."""
    chosen = xp.take(frames, stack_slots(prev_gap, slots, frame_stack, xp), axis=0)  # [..., k, H, W, c]
    lead = chosen.shape[:-4]
    k, h, w, c = chosen.shape[-4:]
    moved = xp.moveaxis(chosen, -4, -2)  # [..., H, W, k, c]
    return moved.reshape(*lead, h, w, k * c)


class FrameStacker:
    """The policy's stacked observations from a vector env's single frames (numpy or JAX arrays).

        stacker = FrameStacker(3)
        obs = stacker.reset(vec.reset()[0])
        next_obs, reward, terminated, truncated, infos = vec.step(actions)
        obs = stacker.step(next_obs, terminated | truncated)   # same-step autoreset: a new episode's first frame

    Camera images ("pixels/", "depth/", "segmentation/": [..., H, W, c]) are stacked along channels; other
    entries pass through unchanged.
    """

    def __init__(self, frame_stack: int):
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.frame_stack = frame_stack
        self._stacks: dict[str, Any] | None = None  # None until reset()

    def reset(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Every env starts a new episode: its first frame repeated."""
        self._stacks = {name: _tile(frame, self.frame_stack) for name, frame in _pixels(obs).items()}
        return self._with_stacks(obs)

    def step(self, obs: Mapping[str, Any], episode_started: Any) -> dict[str, Any]:
        """Adds each env's new frame; where `episode_started` [N] is True the frame starts a new history."""
        if self._stacks is None:
            raise RuntimeError("call reset() before step()")
        for name, frame in _pixels(obs).items():
            xp = np if isinstance(frame, np.ndarray) else jnp
            channels = frame.shape[-1]
            rolled = xp.concatenate([self._stacks[name][..., channels:], frame], axis=-1)
            started = xp.asarray(episode_started, bool).reshape(-1, 1, 1, 1)
            self._stacks[name] = xp.where(started, _tile(frame, self.frame_stack), rolled)
        return self._with_stacks(obs)

    def _with_stacks(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        return {**obs, **self._stacks}


def _pixels(obs: Mapping[str, Any]) -> dict[str, Any]:
    return {name: x for name, x in obs.items() if is_image(name)}


def _tile(frame, k: int):
    xp = np if isinstance(frame, np.ndarray) else jnp
    return xp.concatenate([frame] * k, axis=-1)
