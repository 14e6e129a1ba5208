"""What the learner's server hands out: `TransitionBatch` (header + arrays), and the queue of accepted batches
waiting for `TransitionServer.get()`, with the record and byte totals its stats report. No sockets, no lock:
the server holds its lock around every call."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from serl_gs.transport.streams import Stream


@dataclass(frozen=True)
class BatchHeader:
    """Who sent a batch and with which policy. One batch = one record per env for `num_records` envs."""

    actor_id: str
    session: int  # random per actor process: a restarted actor is a new stream
    seq: int  # contiguous per (actor_id, session), in delivery order
    index: int  # the actor's send() count; gaps only if the actor used overflow="drop_oldest"
    dropped_before: int  # batches the actor dropped right before this one: do not pair records across
    param_version: int  # the parameter version of the policy that acted
    num_records: int
    nbytes: int
    received_at: float  # time.time() on the learner
    part: tuple[int, int] = (0, 1)  # (index, count) of this batch within one actor step (wire "part")


class TransitionBatch(NamedTuple):
    header: BatchHeader
    arrays: dict[str, np.ndarray]  # read-only views, each [num_records, ...]


class Queued(NamedTuple):
    stream: Stream
    seq: int
    batch: TransitionBatch


class BatchQueue:
    """Accepted batches in arrival order (per stream: seq order)."""

    def __init__(self) -> None:
        self._items: collections.deque[Queued] = collections.deque()
        self.records = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, stream: Stream, batch: TransitionBatch) -> None:
        self._items.append(Queued(stream, batch.header.seq, batch))
        self.records += batch.header.num_records
        self.bytes += batch.header.nbytes

    def popleft(self) -> Queued:
        item = self._items.popleft()
        self.records -= item.batch.header.num_records
        self.bytes -= item.batch.header.nbytes
        return item

    def drop_stream(self, stream: Stream) -> tuple[int, int]:
        """Drops every queued batch of `stream`: (the highest seq dropped, or -1; how many were dropped)."""
        last, dropped, kept = -1, 0, collections.deque()
        for item in self._items:
            if item.stream is not stream:
                kept.append(item)
                continue
            last, dropped = max(last, item.seq), dropped + 1
            self.records -= item.batch.header.num_records
            self.bytes -= item.batch.header.nbytes
        self._items = kept
        return last, dropped
