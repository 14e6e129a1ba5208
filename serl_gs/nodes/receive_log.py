"""A write-ahead log of the batches a learner received since its last checkpoint.

The learner acknowledges a batch (so the actor forgets it) only once it is in this log; the replay on disk
covers everything up to the last checkpoint. After a crash, the restarted learner restores the checkpointed
replay and re-inserts the logged batches past the checkpoint's transport positions, so nothing an actor sent
is lost and nothing is taken twice. Each batch is one `.npz` (numeric arrays, no pickle), written to a
temporary name and renamed, so a crash mid-write leaves no partial entry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_HEADER = ("__actor_id", "__session", "__seq")


@dataclass(frozen=True)
class LoggedBatch:
    actor_id: str
    session: int
    seq: int
    records: dict[str, np.ndarray]


class ReceiveLog:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(self._entries())
        self._next = int(existing[-1].stem) + 1 if existing else 0

    def _entries(self) -> list[Path]:
        return [p for p in self.directory.glob("*.npz") if p.stem.isdigit()]

    def append(self, actor_id: str, session: int, seq: int, records: Mapping[str, np.ndarray]) -> None:
        path = self.directory / f"{self._next:012d}.npz"
        tmp = path.with_suffix(".tmp")
        header = {"__actor_id": np.asarray(actor_id), "__session": np.asarray(session), "__seq": np.asarray(seq)}
        with open(tmp, "wb") as f:
            np.savez(f, **header, **records)
        os.replace(tmp, path)
        self._next += 1

    def __iter__(self) -> Iterator[LoggedBatch]:
        for path in sorted(self._entries()):
            with np.load(path, allow_pickle=False) as data:
                records = {k: data[k] for k in data.files if k not in _HEADER}
                yield LoggedBatch(str(data["__actor_id"]), int(data["__session"]), int(data["__seq"]), records)

    def clear(self) -> None:
        """Forgets every entry: call once the replay holding them is safely on disk."""
        for path in self._entries():
            path.unlink()
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()
