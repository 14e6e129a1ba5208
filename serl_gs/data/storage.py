"""Where the replay's frames live: on the learner's device when they fit, else in host memory.

Both storages hold the same per-slot fields and answer the same calls: `write` (scatter new records and
forward links), `sample` (a Batch of uniform transitions, see `data.sampling`) and `device_fields` (the fields
as device arrays for a caller's jit, or None). Slots are always drawn on the device; only the frame gather
differs: inside the same jit (device) or one numpy gather and one transfer (host).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.data import sampling
from serl_gs.data.batch import Batch
from serl_gs.data.frame_stack import NO_PREDECESSOR
from serl_gs.data.records import RecordSpec

StorageKind = Literal["device", "host"]


def slot_bytes(spec: RecordSpec) -> int:
    """Bytes one stored record takes: its obs, action, reward, terminated and the int32 forward and backward
    links (frame stacks add nothing: each frame is stored once)."""
    obs = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for _, shape, dtype in spec.obs)
    return obs + 4 * spec.action_dim + 4 + 1 + 4 + 4


@dataclass(frozen=True)
class StoragePlan:
    kind: StorageKind
    bytes_needed: int
    device_free: int | None  # None: the device reports no memory figure (CPU: it is host memory)
    host_free: int
    reason: str

    def describe(self) -> str:
        gib = lambda b: f"{b / 2**30:.2f} GiB"
        device = "n/a" if self.device_free is None else gib(self.device_free)
        return (
            f"replay: storing frames in {self.kind} memory, {gib(self.bytes_needed)} "
            f"(device free {device}, host free {gib(self.host_free)}): {self.reason}"
        )


def host_free_bytes() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_free_bytes(device: jax.Device) -> int | None:
    stats = device.memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def plan_storage(
    bytes_needed: int,
    requested: Literal["auto", "device", "host"],
    device_free: int | None,
    host_free: int,
    device_fraction: float,
) -> StoragePlan:
    """Chooses device storage when it fits in `device_fraction` of the device's free memory."""
    if requested not in ("auto", "device", "host"):
        raise ValueError(f"storage must be 'auto', 'device' or 'host', got {requested!r}")
    if not 0.0 < device_fraction <= 1.0:
        raise ValueError(f"device_fraction must be in (0, 1], got {device_fraction}")
    plan = partial(StoragePlan, bytes_needed=bytes_needed, device_free=device_free, host_free=host_free)
    if requested != "auto":
        return plan(kind=requested, reason="as configured")
    if device_free is None:
        return plan(kind="device", reason="the device shares host memory, sampling stays inside jit")
    budget = int(device_free * device_fraction)
    if bytes_needed <= budget:
        return plan(kind="device", reason=f"fits in {device_fraction:.0%} of free device memory")
    return plan(kind="host", reason=f"exceeds {device_fraction:.0%} of free device memory")


def empty_fields(spec: RecordSpec, capacity: int, zeros=np.zeros) -> dict:
    """Zeroed arrays for every stored field, [capacity, ...]; `zeros(shape, dtype)` makes each one."""
    return {
        "obs": {name: zeros((capacity, *shape), np.dtype(dtype)) for name, shape, dtype in spec.obs},
        "action": zeros((capacity, spec.action_dim), np.dtype(np.float32)),
        "reward": zeros((capacity,), np.dtype(np.float32)),
        "terminated": zeros((capacity,), np.dtype(bool)),
        "next_gap": zeros((capacity,), np.dtype(np.int32)),  # slots to the stream's next record; 0 = none yet
        # Slots back to the episode's previous record; 0 = first frame, -1 = unknown (data.frame_stack).
        "prev_gap": zeros((capacity,), np.dtype(np.int32)) + NO_PREDECESSOR,
    }


def _relink(next_gap, prev_gap, slots, new_prev_gap, link_slots, link_gaps, xp=jnp):
    """The links after a write (slots and link_slots padded with `capacity`, which is dropped).

    A rewritten slot's old successor loses its backward link (data.frame_stack); the rewritten slot starts with
    its record's own backward link and no successor; then this write's records link their predecessors."""
    capacity = next_gap.shape[0]
    live = slots < capacity
    old_next = xp.where(live, next_gap[xp.minimum(slots, capacity - 1)], 0)
    orphans = xp.where(old_next > 0, (slots + old_next) % capacity, capacity)
    if xp is jnp:
        prev_gap = prev_gap.at[orphans].set(NO_PREDECESSOR, mode="drop").at[slots].set(new_prev_gap, mode="drop")
        next_gap = next_gap.at[slots].set(0, mode="drop").at[link_slots].set(link_gaps, mode="drop")
        return next_gap, prev_gap
    prev_gap[orphans[orphans < capacity]] = NO_PREDECESSOR  # in place: host fields
    prev_gap[slots[live]] = new_prev_gap[live]
    next_gap[slots[live]] = 0
    link_live = link_slots < capacity
    next_gap[link_slots[link_live]] = link_gaps[link_live]
    return next_gap, prev_gap


@partial(jax.jit, donate_argnums=0)
def _device_write(fields, slots, rows, link_slots, link_gaps):
    # slots/link_slots are padded with `capacity` (out of range): mode="drop" ignores those rows.
    set_rows = lambda stored, new: stored.at[slots].set(new, mode="drop")
    out = {
        "obs": jax.tree.map(set_rows, fields["obs"], rows["obs"]),
        "action": set_rows(fields["action"], rows["action"]),
        "reward": set_rows(fields["reward"], rows["reward"]),
        "terminated": set_rows(fields["terminated"], rows["terminated"]),
    }
    out["next_gap"], out["prev_gap"] = _relink(
        fields["next_gap"], fields["prev_gap"], slots, rows["prev_gap"], link_slots, link_gaps
    )
    return out


_sample_slots = jax.jit(sampling.sample_slots, static_argnames=("num_batches", "batch_size", "frame_stack"))
_sample_on_device = jax.jit(
    sampling.sample_batch, static_argnames=("num_batches", "batch_size", "n_step", "discount", "frame_stack")
)
_links_only = jax.jit(_relink)


class DeviceStorage:
    """All fields as device arrays; `gather` runs inside the sampler's jit."""

    kind: StorageKind = "device"

    def __init__(self, spec: RecordSpec, capacity: int, device: jax.Device):
        self.capacity = capacity
        # Allocated on the device directly: no host copy of a buffer that may be tens of GiB.
        self.fields = empty_fields(spec, capacity, lambda shape, dtype: jnp.zeros(shape, dtype, device=device))

    @property
    def next_gap(self) -> jax.Array:  # [capacity] int32 on the device
        return self.fields["next_gap"]

    @property
    def prev_gap(self) -> jax.Array:  # [capacity] int32 on the device
        return self.fields["prev_gap"]

    def write(self, slots, rows, link_slots, link_gaps) -> None:
        self.fields = _device_write(self.fields, slots, rows, link_slots, link_gaps)

    def sample(
        self, key: jax.Array, num_batches: int, batch_size: int, n_step: int, discount: float, frame_stack: int = 1
    ) -> Batch:
        return _sample_on_device(self.fields, key, num_batches, batch_size, n_step, discount, frame_stack)

    def device_fields(self) -> dict:
        return self.fields

    def load_numpy(self, fields: dict) -> None:
        self.fields = jax.device_put(fields, self.fields["reward"].device)


class HostStorage:
    """Frames in numpy (host memory); only the int32 links are mirrored on the device for the sampler."""

    kind: StorageKind = "host"

    def __init__(self, spec: RecordSpec, capacity: int, device: jax.Device):
        self.capacity = capacity
        self.fields = empty_fields(spec, capacity)
        self._device = device
        self._next_gap, self._prev_gap = jax.device_put((self.fields["next_gap"], self.fields["prev_gap"]), device)

    @property
    def next_gap(self) -> jax.Array:
        return self._next_gap

    @property
    def prev_gap(self) -> jax.Array:
        return self._prev_gap

    def write(self, slots, rows, link_slots, link_gaps) -> None:
        keep = slots < self.capacity
        live, live_rows = slots[keep], jax.tree.map(lambda r: r[keep], rows)
        for name, frames in self.fields["obs"].items():
            frames[live] = live_rows["obs"][name]
        for name in ("action", "reward", "terminated"):
            self.fields[name][live] = live_rows[name]
        _relink(self.fields["next_gap"], self.fields["prev_gap"], slots, rows["prev_gap"], link_slots, link_gaps, np)
        self._next_gap, self._prev_gap = _links_only(
            self._next_gap, self._prev_gap, slots, rows["prev_gap"], link_slots, link_gaps
        )

    def sample(
        self, key: jax.Array, num_batches: int, batch_size: int, n_step: int, discount: float, frame_stack: int = 1
    ) -> Batch:
        """Slots drawn on the device, then one numpy gather (n-step chains followed on the host), one transfer."""
        slots = _sample_slots(self._next_gap, key, num_batches, batch_size, self._prev_gap, frame_stack)
        k, j = jax.device_get(slots)
        batch = sampling.gather(self.fields, k, j, n_step, discount, xp=np, frame_stack=frame_stack)
        return jax.device_put(batch, self._device)

    def device_fields(self) -> None:
        return None  # the frames are in host memory

    def load_numpy(self, fields: dict) -> None:
        self.fields = fields
        self._next_gap, self._prev_gap = jax.device_put((fields["next_gap"], fields["prev_gap"]), self._device)
