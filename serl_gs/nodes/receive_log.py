"""A write-ahead log of the batches a learner received since its last checkpoint.

The learner acknowledges a batch (so the actor forgets it) only once it is in this log; the replay on disk
covers everything up to the last checkpoint. After a crash, the restarted learner restores the checkpointed
replay and re-inserts the logged batches past the checkpoint's transport positions, so nothing an actor sent
is lost and nothing is taken twice.

Each batch is one file, `<n>.rlog`, in the transport's own layout (serl_gs.transport.wire): a length-prefixed
msgpack header naming the actor, session, seq and the arrays, then the arrays' raw bytes. No pickle, no zip,
no checksum pass: writing a batch costs one pass over its bytes into the OS's page cache (an `np.savez` of the
same batch cost 4-8x more, see docs/scale.md), and it runs on the learner's ingest thread, not its update loop.
Each file is written to a temporary name and renamed, so a killed process leaves no partial entry. There is
no fsync: a kill -9 loses nothing logged (the OS still writes it out); a power cut may lose the newest entries,
which the restarted learner then reports as damaged. Logs of earlier versions (`<n>.npz`) are still read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serl_gs.transport import wire

_HEADER = ("__actor_id", "__session", "__seq")  # the fields of the older .npz entries
_LEN = struct.Struct("<Q")
_SUFFIXES = (".rlog", ".npz")


@dataclass(frozen=True)
class LoggedBatch:
    actor_id: str
    session: int
    seq: int
    records: dict[str, np.ndarray]


class ReceiveLogDamaged(ValueError):
    """A log entry that cannot be read back (e.g. cut short by a power loss): names the file."""


class ReceiveLog:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self._entries()
        self._next = int(existing[-1].stem) + 1 if existing else 0

    def _entries(self) -> list[Path]:
        entries = [p for p in self.directory.iterdir() if p.suffix in _SUFFIXES and p.stem.isdigit()]
        return sorted(entries, key=lambda p: int(p.stem))

    def append(self, actor_id: str, session: int, seq: int, records: Mapping[str, np.ndarray]) -> None:
        path = self.directory / f"{self._next:012d}.rlog"
        tmp = path.with_suffix(".tmp")
        _, specs, buffers = wire.describe_arrays(records, copy=False)
        head = wire.pack({"actor": actor_id, "session": int(session), "seq": int(seq),
                          "n": len(records["env_index"]), "arrays": [s.to_wire() for s in specs]})  # fmt: skip
        with open(tmp, "wb") as f:
            f.write(_LEN.pack(len(head)))
            f.write(head)
            for buffer in buffers:
                f.write(memoryview(buffer).cast("B"))
        os.replace(tmp, path)
        self._next += 1

    def __iter__(self) -> Iterator[LoggedBatch]:
        for path in self._entries():
            yield _read_npz(path) if path.suffix == ".npz" else _read_rlog(path)

    def clear(self) -> None:
        """Forgets every entry: call once the replay holding them is safely on disk."""
        for path in self._entries():
            path.unlink()
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()


def _read_rlog(path: Path) -> LoggedBatch:
    data = memoryview(path.read_bytes())
    try:
        if data.nbytes < _LEN.size:
            raise wire.WireError("malformed", "shorter than its length prefix")
        (head_len,) = _LEN.unpack(data[: _LEN.size])
        header = wire.unpack_header(data[_LEN.size : _LEN.size + head_len])
        n = wire.get_int(header, "n", 1, wire.MAX_RECORDS)
        specs = wire.parse_specs(header, n)
        offset, frames = _LEN.size + head_len, []
        for spec in specs:
            frames.append(data[offset : offset + spec.nbytes])
            offset += spec.nbytes
        if offset != data.nbytes:
            raise wire.WireError("bad_arrays", f"{data.nbytes} bytes, the header describes {offset}")
        arrays = wire.decode_arrays(specs, frames)
        batch = LoggedBatch(wire.get_str(header, "actor"), wire.get_int(header, "session"),
                            wire.get_int(header, "seq"), arrays)  # fmt: skip
    except wire.WireError as e:
        raise ReceiveLogDamaged(f"receive log entry {path} cannot be read ({e})") from None
    return batch


def _read_npz(path: Path) -> LoggedBatch:
    with np.load(path, allow_pickle=False) as data:
        records = {k: data[k] for k in data.files if k not in _HEADER}
        return LoggedBatch(str(data["__actor_id"]), int(data["__session"]), int(data["__seq"]), records)
