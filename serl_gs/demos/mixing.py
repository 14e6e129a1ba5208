"""RLPD's demo buffer and its half-and-half batches (Ball et al. 2023; SERL samples 50/50 the same way).

The demo buffer is a second `ReplayBuffer`, built for the same record spec and frame stack as the online one, so
demo transitions are rebuilt exactly as online ones are: frame stacks from stored single frames along the
backward links, n-step returns along the forward links, which stop at an episode's end (a truncated or terminated
record has no link), so an n-step target never crosses from one demo episode into the next. Each file's episodes
go in one after another as one stream (each starts `is_first`).

`mixed_sample` draws `demo_count(batch_size, ratio)` transitions from the demo buffer and the rest from the
online replay with independent keys, and concatenates them along the batch axis: every batch holds exactly that
many demo transitions (first) and the rest online ones; `Batch.demo` marks the demo rows (the temperature fits
the policy's entropy on the online rows only: agents.losses.temperature_loss).

Intervened records (`intervened_rows`) join the demo buffer too: each run of intervened steps of a stream goes
in after the record it started from, which enters as an episode's first frame (its predecessor is not taken: it
was the policy's), so the run's first transition is paired and no transition of the policy's enters. With
frame_stack > 1 the stacks at the start of a run repeat that first frame, as at an episode's start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.data.batch import Batch
from serl_gs.data.records import Records, RecordSpec
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.demos.dataset import DemoFile, load_checked

MAX_TAILS = 1 << 16  # streams whose last record is remembered (a run's first transition needs it)
INTERVENED = "intervened"  # the extra ("extras/intervened", bool per record) that marks an overridden action


def check_intervened(intervened: np.ndarray | None, n: int) -> None:
    """Raises ValueError unless `intervened` (the extra, from the network) is None or one flag per record."""
    if intervened is not None and intervened.shape != (n,):
        raise ValueError(f"extras/{INTERVENED} has shape {intervened.shape}, expected ({n},): one flag per record")


def demo_count(batch_size: int, ratio: float) -> int:
    """Demo transitions per batch of `batch_size`."""
    return int(round(batch_size * ratio))


def mixed_sample(
    online: ReplayBuffer,
    demos: ReplayBuffer,
    key: jax.Array,
    batch_size: int,
    num_batches: int,
    ratio: float,
    n_step: int = 1,
    discount: float = 1.0,
) -> Batch:
    """[num_batches, batch_size] transitions: the first `demo_count` of each batch from `demos`, the rest online."""
    n_demo = demo_count(batch_size, ratio)
    if not 0 < n_demo < batch_size:
        raise ValueError(f"demo_ratio {ratio} of batch_size {batch_size} leaves {n_demo} demo transitions per batch")
    demo_key, online_key = jax.random.split(key)
    from_demos = demos.sample(demo_key, n_demo, num_batches, n_step, discount)
    from_online = online.sample(online_key, batch_size - n_demo, num_batches, n_step, discount)
    mixed = jax.tree.map(lambda d, o: jnp.concatenate([d, o], axis=1), from_demos, from_online)
    demo = jnp.broadcast_to(jnp.arange(batch_size) < n_demo, (num_batches, batch_size))
    return mixed.replace(demo=jax.device_put(demo, mixed.reward.sharding))  # where the rows are


def check_action_limit(limit: float) -> None:
    """Raises ValueError unless 0 < limit <= 1 (1: actions as recorded)."""
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"demo action limit must be in (0, 1], got {limit}")


def clip_actions(records: Records, limit: float) -> Records:
    """`records` with "action" clipped into [-limit, limit] (a new dict; the input is not changed)."""
    if limit >= 1.0:
        return records
    return {**records, "action": np.clip(records["action"], -limit, limit).astype(records["action"].dtype)}


class DemoBuffer:
    """The demo replay: files' episodes plus intervened records; `replay` is a plain ReplayBuffer."""

    def __init__(self, replay: ReplayBuffer, files: Sequence[DemoFile] = (), action_limit: float = 1.0):
        check_action_limit(action_limit)
        self.replay = replay
        self.files = list(files)
        self.action_limit = action_limit
        self._tails: dict[tuple[str, int], tuple[Records, bool]] = {}  # stream -> (its last record, intervened?)
        self.intervened_records = 0

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str],
        spec: RecordSpec,
        config: ReplayConfig,
        extra_capacity: int,
        obs_spec: Mapping,
        action_dim: int,
        task: Mapping,
        action_limit: float = 1.0,
    ) -> DemoBuffer:
        """Checks every file against the learner's spec (ValueError naming the first mismatch), then loads them
        with their actions clipped into [-action_limit, action_limit]."""
        check_action_limit(action_limit)
        loaded = [load_checked(p, obs_spec, action_dim, task) for p in paths]
        records = sum(e.length + 1 for _, episodes in loaded for e in episodes)
        replay = ReplayBuffer(spec, dataclasses.replace(config, capacity=max(2, records + extra_capacity)))
        buffer = cls(replay, [demo for demo, _ in loaded], action_limit)
        for i, (_, episodes) in enumerate(loaded):
            for episode in episodes:
                replay.insert(f"demo_file{i}", clip_actions(episode.records(), action_limit))
        return buffer

    @property
    def num_transitions(self) -> int:
        return self.replay.num_transitions

    def add_intervened(self, stream: str, records: Records, intervened: np.ndarray | None) -> int:
        """Inserts the intervened runs of one message of `stream` (an actor session); returns records inserted.
        Call it with every message (`intervened` None: none), so a run's first transition finds its predecessor."""
        if intervened is None:
            intervened = np.zeros((len(records["env_index"]),), bool)
        rows = intervened_rows(records, np.asarray(intervened, bool), stream, self._tails)
        if rows is None:
            return 0
        rows = clip_actions(rows, self.action_limit)
        size = len(rows["env_index"])
        for start in range(0, size, self.replay.capacity):  # in order: a message may outsize a small demo ring
            self.replay.insert(stream, {k: v[start : start + self.replay.capacity] for k, v in rows.items()})
        n = int((~rows["is_first"]).sum())
        self.intervened_records += n
        return n


def intervened_rows(
    records: Records,
    intervened: np.ndarray,  # [n] bool
    stream: str,
    tails: dict[tuple[str, int], tuple[Records, bool]],  # updated: each env's last record and whether intervened
) -> Records | None:
    """The records of `records` to insert into the demo buffer (module doc), in stream order; None if none."""
    take: list[tuple[int | Records, bool]] = []  # (row index or a remembered record, as an episode's first frame)
    for env in np.unique(records["env_index"]):
        rows = np.flatnonzero(records["env_index"] == env)
        tail = tails.pop((stream, int(env)), None)  # (re-inserted below: the dict's order is least recent first)
        if not intervened[rows].any():  # the common case: only remember the stream's last record
            r = rows[-1]
            tails[(stream, int(env))] = (_row(records, r), False)
            continue
        for r in rows:
            if intervened[r] and not records["is_first"][r]:
                if tail is not None and not tail[1]:  # a run starts: its first obs is the predecessor's
                    take.append((tail[0], True))
                if tail is not None:
                    take.append((int(r), False))
                # (no predecessor known, e.g. the learner restarted mid-run: the row starts the run itself)
                else:
                    take.append((int(r), True))
            tail = (_row(records, r), bool(intervened[r]) and not records["is_first"][r])
        tails[(stream, int(env))] = tail
    while len(tails) > MAX_TAILS:  # streams of actors long gone: forget the least recent
        del tails[next(iter(tails))]
    if not take:
        return None
    parts = []
    for row, first in take:
        part = {k: v[row : row + 1] for k, v in records.items()} if isinstance(row, int) else dict(row)
        if first:
            part["is_first"] = np.ones((1,), bool)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in records}


def _row(records: Records, r: int) -> Records:
    """Record r as a one-row message, copied (a view would keep the whole message alive)."""
    return {k: v[r : r + 1].copy() for k, v in records.items()}
