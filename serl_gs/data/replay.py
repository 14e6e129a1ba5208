"""Replay that stores every frame once and rebuilds (obs, next_obs) per (actor, env) stream.

Each inserted record takes one slot of a ring of `capacity` slots. When a record arrives, the replay looks up
the previous record of its stream (by actor id and env index, whatever the interleaving with other streams)
and writes a forward link into that predecessor's slot: `next_gap` = how many slots ahead its successor lies.
A slot with a link is one transition: obs = its own frame, action / reward / terminated / next_obs = those of
the slot `next_gap` ahead. Links are only written to predecessors that are still in the ring, and a slot's
link is cleared when the slot is rewritten; since a successor is always newer than its predecessor, a linked
slot's successor is always still there. So every sampled pair is correct at any interleaving, episode
boundary or ring wrap-around, and sampling is uniform over the linked slots (cumsum + searchsorted in jit).

Capacity counts records: each record ends one transition, except an episode's first frame, so for episodes
of T steps the ring holds capacity * T / (T + 1) transitions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from serl_gs.data.batch import Batch
from serl_gs.data.frame_stack import NO_PREDECESSOR
from serl_gs.data.records import OBS_PREFIX, RecordSpec, check_finite
from serl_gs.data.saving import existing_directory, replace_directory
from serl_gs.data.storage import (
    DeviceStorage,
    HostStorage,
    StoragePlan,
    _relink,
    device_free_bytes,
    host_free_bytes,
    plan_storage,
    slot_bytes,
)

_SAVE_FORMAT = 2  # 1: every field at the top of the directory (still read)
_PENDING = "frames_pending.json"  # present while an incremental save writes frames in place
_LINKED_FIELDS = ("action", "reward", "terminated", "next_gap", "prev_gap")  # saved beside the frames
MAX_ENVS_PER_ACTOR = 1 << 20  # stream tables are dense per actor: a bad env_index must not allocate gigabytes
ActorId = int | str
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 200_000  # records (≈ transitions, see module doc)
    storage: Literal["auto", "device", "host"] = "auto"
    device_fraction: float = 0.5  # "auto" keeps frames on the device if they fit in this share of its free memory
    # Frames per camera in sampled observations (data.frame_stack): stacks are rebuilt from single stored frames.
    frame_stack: int = 1

    def __post_init__(self):
        if not isinstance(self.capacity, int) or self.capacity < 2:
            raise ValueError(f"capacity must be an int >= 2, got {self.capacity!r}")
        if not isinstance(self.frame_stack, int) or self.frame_stack < 1:
            raise ValueError(f"frame_stack must be an int >= 1, got {self.frame_stack!r}")


@dataclass
class _Streams:
    """Per actor: the global sequence number of each env's last record, and whether it ended an episode."""

    last_seq: np.ndarray  # [E] int64, -1 = no record yet
    last_ended: np.ndarray  # [E] bool

    @classmethod
    def empty(cls) -> _Streams:
        return cls(np.zeros((0,), np.int64), np.zeros((0,), bool))

    def grow(self, num_envs: int) -> None:
        extra = num_envs - self.last_seq.size
        if extra > 0:
            self.last_seq = np.concatenate([self.last_seq, np.full((extra,), -1, np.int64)])
            self.last_ended = np.concatenate([self.last_ended, np.zeros((extra,), bool)])


def _bucket(n: int) -> int:
    """Pads writes to powers of two so the jitted scatter compiles for a handful of sizes only."""
    return max(8, 1 << (n - 1).bit_length())


def _ring_ranges(start: int, end: int, capacity: int) -> list[tuple[int, int]]:
    """The slot ranges [lo, hi) that records start..end-1 occupy in a ring of `capacity` (at most two)."""
    if end - start >= capacity:
        return [(0, capacity)]
    lo, hi = start % capacity, end % capacity
    if start == end:
        return []
    return [(lo, hi)] if lo < hi else [(lo, capacity), (0, hi)] if hi else [(lo, capacity)]


class ReplayBuffer:
    """Stores records once, pairs them per (actor, env) stream, samples Batches of shape [U, B].

    `insert` and `sample` may be called from different threads (a lock keeps the bookkeeping consistent).
    """

    def __init__(
        self,
        spec: RecordSpec,
        config: ReplayConfig,
        *,
        device: jax.Device | None = None,
        log: Callable[[str], None] = logger.info,
    ):
        self.spec = spec
        self.config = config
        self.capacity = config.capacity
        device = device or jax.devices()[0]
        self.plan: StoragePlan = plan_storage(
            slot_bytes(spec) * config.capacity,
            config.storage,
            device_free_bytes(device),
            host_free_bytes(),
            config.device_fraction,
        )
        log(self.plan.describe())
        storage_cls = DeviceStorage if self.plan.kind == "device" else HostStorage
        self._storage = storage_cls(spec, config.capacity, device)
        self._has_successor = np.zeros((config.capacity,), bool)  # host mirror of next_gap > 0
        self._streams: dict[ActorId, _Streams] = {}
        # Env slots of all stream tables together: each actor session adds one table, and peers choose env_index,
        # so the tables are bounded as a whole; over the bound, the tables that received least recently go
        # (a later record of theirs starts unpaired, as after a restart). Honest runs stay far below it.
        self.max_stream_slots = max(4 * config.capacity, 1 << 16)
        self._stream_slots = 0
        self.streams_forgotten = 0
        self._lock = threading.Lock()
        self.total_inserted = 0  # records ever inserted (not transitions: an episode's first frame ends none)
        self.num_transitions = 0  # linked slots now in the ring: what `sample` draws from
        self.unpaired = 0  # non-first records whose predecessor was unknown, ended or already overwritten
        self._saved_to: tuple[str, int] | None = None  # (directory, total_inserted) of the last save or restore
        self.restored_dropped = 0  # records a restore dropped after a crash inside an incremental save

    @property
    def size(self) -> int:
        """Records currently stored."""
        return min(self.total_inserted, self.capacity)

    @property
    def storage_kind(self) -> str:
        return self._storage.kind

    def stats(self) -> dict[str, int]:
        return {
            "size": self.size,
            "num_transitions": self.num_transitions,
            "total_inserted": self.total_inserted,
            "unpaired": self.unpaired,
            "streams": sum(int((s.last_seq >= 0).sum()) for s in self._streams.values()),
        }

    def check(self, records: Mapping[str, np.ndarray]) -> int:
        """Raises ValueError naming what makes `records` unfit for this replay (schema, size, env_index, NaN);
        returns n. `insert` checks the same before it changes anything."""
        n = self.spec.check(records)
        if n > self.capacity:
            raise ValueError(f"a message of {n} records does not fit a replay of capacity {self.capacity}")
        if n and int(records["env_index"].max()) >= MAX_ENVS_PER_ACTOR:
            raise ValueError(
                f"env_index {int(records['env_index'].max())} >= {MAX_ENVS_PER_ACTOR}, "
                "the limit of the per-actor stream table"
            )
        check_finite(records)
        return n

    def insert(self, actor_id: ActorId, records: Mapping[str, np.ndarray]) -> None:
        """Stores one message's records (in stream order within each env) and links them to their streams."""
        if not isinstance(actor_id, int | str) or isinstance(actor_id, bool):
            raise ValueError(f"actor_id must be an int or str, got {actor_id!r}")
        n = self.check(records)
        if n == 0:
            return
        with self._lock:
            self._insert_locked(actor_id, records, n)

    def _insert_locked(self, actor_id: ActorId, records: Mapping[str, np.ndarray], n: int) -> None:
        env = records["env_index"].astype(np.int64)
        streams = self._streams.setdefault(actor_id, _Streams.empty())
        slots_before = streams.last_seq.size
        streams.grow(int(env.max()) + 1)
        self._stream_slots += streams.last_seq.size - slots_before
        if self._stream_slots > self.max_stream_slots:
            self._forget_streams(keep=actor_id)

        seq = self.total_inserted + np.arange(n, dtype=np.int64)
        end_total = self.total_inserted + n
        ended = records["terminated"] | records["truncated"]

        # Predecessor of each record: the previous row of the same env in this message, else the stream table.
        order = np.argsort(env, kind="stable")
        env_sorted = env[order]
        same_as_before = np.zeros((n,), bool)
        same_as_before[1:] = env_sorted[1:] == env_sorted[:-1]
        prev_seq = np.where(same_as_before, np.roll(seq[order], 1), streams.last_seq[env_sorted])
        prev_ended = np.where(same_as_before, np.roll(ended[order], 1), streams.last_ended[env_sorted])
        is_first = records["is_first"][order]

        has_prev = (prev_seq >= 0) & ~prev_ended
        survives = prev_seq >= end_total - self.capacity  # still in the ring once this message is written
        linked = ~is_first & has_prev & survives
        self.unpaired += int(np.count_nonzero(~is_first & ~linked))

        last_of_env = np.ones((n,), bool)
        last_of_env[:-1] = env_sorted[1:] != env_sorted[:-1]
        streams.last_seq[env_sorted[last_of_env]] = seq[order][last_of_env]
        streams.last_ended[env_sorted[last_of_env]] = ended[order][last_of_env]

        slots = (seq % self.capacity).astype(np.int32)
        link_slots = (prev_seq[linked] % self.capacity).astype(np.int32)
        link_gaps = (seq[order][linked] - prev_seq[linked]).astype(np.int32)
        # Backward links (frame stacks, data.frame_stack), in record order: the same pairs, seen from the successor.
        prev_gaps = np.empty((n,), np.int32)
        prev_gaps[order] = np.where(is_first, 0, np.where(linked, seq[order] - prev_seq, NO_PREDECESSOR))

        # Host bookkeeping: rewritten slots lose their links, then the new links count.
        self.num_transitions -= int(np.count_nonzero(self._has_successor[slots]))
        self._has_successor[slots] = False
        self._has_successor[link_slots] = True
        self.num_transitions += int(link_slots.size)
        self.total_inserted = end_total

        self._storage.write(*self._padded_write(records, slots, prev_gaps, link_slots, link_gaps, n))

    def _forget_streams(self, keep: ActorId) -> None:
        """Drops the stream tables (other than `keep`'s) whose newest record is oldest, until within the bound."""
        newest = sorted((int(s.last_seq.max(initial=-1)), i, a) for i, (a, s) in enumerate(self._streams.items()))
        for _, _, actor in newest:
            if self._stream_slots <= self.max_stream_slots:
                return
            if actor != keep:
                self._stream_slots -= self._streams.pop(actor).last_seq.size
                self.streams_forgotten += 1

    def _padded_write(self, records, slots, prev_gaps, link_slots, link_gaps, n):
        width = _bucket(n)
        pad = lambda a, fill=0: np.concatenate([a, np.full((width - a.shape[0], *a.shape[1:]), fill, a.dtype)])
        rows = {
            "obs": {name: pad(records[OBS_PREFIX + name]) for name in self.spec.obs_names},
            "action": pad(records["action"]),
            "reward": pad(records["reward"]),
            "terminated": pad(records["terminated"]),
            "prev_gap": pad(prev_gaps, NO_PREDECESSOR),
        }
        return (
            pad(slots, self.capacity),
            rows,
            pad(link_slots, self.capacity),
            pad(link_gaps),
        )

    def sample(
        self, key: jax.Array, batch_size: int, num_batches: int = 1, n_step: int = 1, discount: float = 1.0
    ) -> Batch:
        """Uniform transitions, fields shaped [num_batches, batch_size, ...], on the learner's device.

        n_step > 1: n-step returns with `discount` (see data.sampling); the Batch then carries `discount`.
        """
        if batch_size < 1 or num_batches < 1 or n_step < 1:
            raise ValueError(
                f"batch_size, num_batches and n_step must be >= 1, got {batch_size}, {num_batches}, {n_step}"
            )
        with self._lock:
            if self.num_transitions == 0:
                raise ValueError("the replay holds no complete transition yet; insert more records first")
            return self._storage.sample(key, num_batches, batch_size, n_step, discount, self.config.frame_stack)

    def device_fields(self) -> dict | None:
        """The stored fields as device arrays, for sampling inside a caller's jit (`data.sampling`); None when
        frames live in host memory. The arrays are immutable: later inserts do not change this snapshot."""
        with self._lock:
            if self.num_transitions == 0:
                raise ValueError("the replay holds no complete transition yet; insert more records first")
            return self._storage.device_fields()

    @contextlib.contextmanager
    def sampling_fields(self) -> Iterator[dict | None]:
        """`device_fields()` held under the replay's lock: dispatch the jitted call that reads them inside.

        A concurrent insert donates the device fields to its scatter; holding the lock until the reading call
        is dispatched means the insert's donation is dispatched after that read, which the runtime then orders
        after it. Dispatch is asynchronous, so the lock is held for a dispatch, not for the update."""
        with self._lock:
            if self.num_transitions == 0:
                raise ValueError("the replay holds no complete transition yet; insert more records first")
            yield self._storage.device_fields()

    # --- save / restore (for resuming a learner) ---

    def save(self, directory: str | os.PathLike, *, inserts_paused: bool = False) -> None:
        """Saves the replay to `directory`: incrementally when it holds this replay's previous save, else whole.

        Layout: `obs.<i>.npy` (each camera's frames, all `capacity` slots) and `index/` (actions, rewards, flags,
        links, stream tables and meta.json: a few bytes per slot). An incremental save writes into the frame
        files only the slots written since the previous save, then swaps in a new `index/` (written beside,
        then renamed in), so its cost follows the records received, not the capacity: at 200k slots of
        2x64² frames a whole save writes 4.9 GB, an incremental one a few MB per thousand records.
        Crash safety: before frames are written in place, `frames_pending.json` names the records being
        written; a restore that finds it with the old index knows which old slots' frames are no longer theirs
        and drops those records (the oldest in the ring, the ones the interrupted writes were overwriting), so
        every restored sample is still correct. A whole save is written beside and swapped in (data.saving).
        No fsync: a killed process loses nothing written here (the OS has it); a power cut may.

        The files must be one consistent state, so inserts wait while the replay is written: under the replay's
        lock, which also holds up sampling; or, with `inserts_paused`, under the caller's promise that no insert
        runs meanwhile (the learner holds its ingest lock), so sampling goes on beside the save.
        """
        directory = os.fspath(directory)
        with contextlib.nullcontext() if inserts_paused else self._lock:
            if self._saved_to is not None and self._saved_to == (os.path.realpath(directory), self._on_disk(directory)):
                self._save_incremental(directory)
            else:
                self._save_whole(directory)
            self._saved_to = (os.path.realpath(directory), self.total_inserted)

    def _on_disk(self, directory: str) -> int | None:
        """total_inserted of the save in `directory` if it is one of this layout, spec and capacity, else None."""
        try:
            with open(os.path.join(directory, "index", "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        same = meta.get("format") == _SAVE_FORMAT and meta.get("config", {}).get("capacity") == self.capacity
        same = same and meta.get("spec") == self._spec_json() and not os.path.exists(os.path.join(directory, _PENDING))
        return int(meta["total_inserted"]) if same else None

    def _spec_json(self) -> dict:
        # Through JSON, so it compares equal to a loaded meta's (tuples become lists).
        return json.loads(json.dumps({"obs": [list(o) for o in self.spec.obs], "action_dim": self.spec.action_dim}))

    def _write_index(self, directory: str) -> None:
        """The small per-slot fields, stream tables and meta into `directory` (created)."""
        os.makedirs(directory)
        fields = self._storage.fields
        arrays = {name: fields[name] for name in _LINKED_FIELDS}
        actors = list(self._streams)
        for i, actor in enumerate(actors):
            arrays[f"streams.{i}.last_seq"] = self._streams[actor].last_seq
            arrays[f"streams.{i}.last_ended"] = self._streams[actor].last_ended
        for name, array in arrays.items():
            np.save(os.path.join(directory, name + ".npy"), np.asarray(array), allow_pickle=False)
        meta = {
            "format": _SAVE_FORMAT,
            "spec": self._spec_json(),
            "config": asdict(self.config),
            "total_inserted": self.total_inserted,
            "num_transitions": self.num_transitions,
            "unpaired": self.unpaired,
            "actors": actors,
        }
        with open(os.path.join(directory, "meta.json"), "w") as f:
            json.dump(meta, f)

    def _save_whole(self, directory: str) -> None:
        tmp = directory + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        # Files are numbered in spec order: observation names hold "/" ("pixels/front").
        for i, name in enumerate(self.spec.obs_names):  # one field at a time on the host, not the whole replay
            frames = np.asarray(self._storage.fields["obs"][name])
            np.save(os.path.join(tmp, f"obs.{i}.npy"), frames, allow_pickle=False)
        self._write_index(os.path.join(tmp, "index"))
        replace_directory(Path(tmp), Path(directory))

    def _save_incremental(self, directory: str) -> None:
        since = self._saved_to[1]
        pending = os.path.join(directory, _PENDING)
        with open(pending + ".tmp", "w") as f:
            json.dump({"from_total": since, "to_total": self.total_inserted}, f)
        os.replace(pending + ".tmp", pending)
        for i, name in enumerate(self.spec.obs_names):
            path = os.path.join(directory, f"obs.{i}.npy")
            stored = self._storage.fields["obs"][name]
            offset = np.load(path, mmap_mode="r").offset  # bytes before slot 0 (the .npy header)
            row = int(np.prod(stored.shape[1:])) * stored.dtype.itemsize
            with open(path, "r+b") as f:
                for lo, hi in _ring_ranges(since, self.total_inserted, self.capacity):
                    f.seek(offset + lo * row)
                    f.write(np.ascontiguousarray(np.asarray(stored[lo:hi])).data)
        index = Path(directory) / "index"
        shutil.rmtree(str(index) + ".tmp", ignore_errors=True)
        self._write_index(str(index) + ".tmp")
        replace_directory(Path(str(index) + ".tmp"), index)
        os.remove(pending)

    def _drop_interrupted(self, directory: str, fields: dict) -> int:
        """After a crash inside an incremental save: forgets the records whose slots it was rewriting (their
        frames may be the new ones). Those slots held the oldest records of the restored ring; each is made
        as if overwritten by an unpaired record: no link from or to it, no stream ending there. Returns how many."""
        pending = os.path.join(directory, _PENDING)
        if not os.path.exists(pending):
            return 0
        try:
            with open(pending) as f:
                span = json.load(f)
            start, end = int(span["from_total"]), int(span["to_total"])
        except (ValueError, KeyError, TypeError):
            start, end = self.total_inserted, self.total_inserted + self.capacity  # unreadable: assume the worst
        if start != self.total_inserted:
            return 0  # the index was swapped in: the save completed but for removing the marker
        cap = self.capacity
        lost = np.arange(max(start - cap, 0), min(end, start + cap) - cap)  # old records whose slots were rewritten
        stale = (lost % cap).astype(np.int32)
        self.num_transitions -= int(np.count_nonzero(self._has_successor[stale]))
        self._has_successor[stale] = False
        none = np.zeros((0,), np.int32)
        _relink(fields["next_gap"], fields["prev_gap"], stale, np.full(stale.shape, NO_PREDECESSOR, np.int32),
                none, none, np)  # fmt: skip
        for streams in self._streams.values():  # a stream that ended there starts its next record unpaired
            streams.last_seq[(streams.last_seq >= max(start - cap, 0)) & (streams.last_seq < end - cap)] = -1
        return int(stale.size)

    @classmethod
    def restore(
        cls,
        directory: str | os.PathLike,
        *,
        storage: Literal["auto", "device", "host"] | None = None,
        device: jax.Device | None = None,
        log: Callable[[str], None] = logger.info,
    ) -> ReplayBuffer:
        """Rebuilds a saved replay (same capacity and spec); `storage` may override where the frames live.

        A save that an incremental write was interrupted in (see `save`) is restored without the records whose
        slots were being rewritten (the oldest ones); `restored_dropped` says how many."""
        directory = os.fspath(directory)
        index = existing_directory(Path(directory) / "index")  # a crash between the index's two renames
        index_dir = directory if index is None else os.fspath(index)  # format 1: everything at the top
        meta_path = os.path.join(index_dir, "meta.json")
        if not os.path.exists(meta_path):
            raise ValueError(f"{directory!r} holds no saved replay (no meta.json)")
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") not in (1, _SAVE_FORMAT) or (meta.get("format") == 1) != (index is None):
            raise ValueError(f"saved replay format {meta.get('format')!r} is not {_SAVE_FORMAT}")
        spec = RecordSpec(
            obs=tuple((name, tuple(shape), dtype) for name, shape, dtype in meta["spec"]["obs"]),
            action_dim=int(meta["spec"]["action_dim"]),
        )
        config = ReplayConfig(**meta["config"])
        if storage is not None:
            config = dataclasses.replace(config, storage=storage)
        replay = cls(spec, config, device=device, log=log)
        load = lambda name, where=index_dir: np.load(os.path.join(where, name + ".npy"), allow_pickle=False)
        fields = {
            "obs": {name: load(f"obs.{i}", directory) for i, name in enumerate(spec.obs_names)},
            **{name: load(name) for name in _LINKED_FIELDS if name != "prev_gap"},
        }
        # Saves from before frame stacks have no backward links: unknown, so none of their slots ends a stack.
        has_prev = os.path.exists(os.path.join(index_dir, "prev_gap.npy"))
        fields["prev_gap"] = load("prev_gap") if has_prev else np.full_like(fields["next_gap"], NO_PREDECESSOR)
        for i, actor in enumerate(meta["actors"]):
            replay._streams[actor] = _Streams(load(f"streams.{i}.last_seq"), load(f"streams.{i}.last_ended"))
            replay._stream_slots += replay._streams[actor].last_seq.size
        replay.total_inserted = int(meta["total_inserted"])
        replay.num_transitions = int(meta["num_transitions"])
        replay.unpaired = int(meta["unpaired"])
        replay._has_successor = fields["next_gap"] > 0
        replay.restored_dropped = replay._drop_interrupted(directory, fields)
        replay._storage.load_numpy(fields)
        if not replay.restored_dropped and index is not None and os.path.realpath(index) == os.path.realpath(
            os.path.join(directory, "index")
        ):
            replay._saved_to = (os.path.realpath(directory), replay.total_inserted)
        return replay
