"""Crash-safe save and resume of a learner's run directory: one `save`, one `restore`.

A learner is described by four things in its run directory:

    checkpoints/<step>/    training state + meta (counters, RNG seed, what the networks were built for), orbax
    replay/                the replay (serl_gs.data.replay), swapped in whole
    replay_state.json      the transport positions and data counters that the saved replay holds
    receive_log/           batches acknowledged since the last save (a write-ahead log, serl_gs.nodes.receive_log)

`save` writes them in an order that leaves a consistent set wherever a crash falls:
 1. the replay state under a pending name, stamped with the replay's insert count;
 2. the replay (written beside, then renamed in);
 3. the pending state renamed to `replay_state.json`, and the receive log cleared (the replay holds it now);
 4. the training state and meta (orbax, atomic), or only the meta when no update happened since the last save.
Whichever of the two state files matches the replay on disk describes it. `restore` reads the newest checkpoint,
the replay and its matching state, and hands back the logged batches that arrived after that replay was saved,
for the learner to insert again: nothing acknowledged is lost and nothing is taken twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serl_gs.data.replay import ReplayBuffer
from serl_gs.data.saving import existing_directory
from serl_gs.nodes.checkpoint import Checkpointer, CheckpointNotFoundError
from serl_gs.nodes.receive_log import LoggedBatch, ReceiveLog
from serl_gs.transport import StreamPosition

REPLAY_STATE = "replay_state.json"
REPLAY_STATE_PENDING = "replay_state.pending.json"


def load_replay_state(run_dir: Path, total_inserted: int) -> dict | None:
    """The saved transport positions and counters that match a restored replay (see the module doc)."""
    for name in (REPLAY_STATE_PENDING, REPLAY_STATE):
        path = Path(run_dir) / name
        if path.exists():
            try:
                state = json.loads(path.read_text())
                matches = state["total_inserted"] == total_inserted
            except (ValueError, KeyError, TypeError):
                continue  # damaged: as if it were not there (the caller says that no state matched)
            if matches:
                return state
    return None


@dataclasses.dataclass
class Restored:
    """What `ResumableRun.restore` found. A fresh run has `step=None`, no replay and no positions."""

    step: int | None  # the checkpoint's update count
    state: Any  # the training state (the template when there is no checkpoint)
    key_seed: int | None  # seed of the learner's sampling key
    counters: dict[str, int]
    replay: Any  # a restored ReplayBuffer, or None: start an empty one
    positions: dict[tuple[str, int], int]  # (actor_id, session) -> next seq the learner expects
    warning: str | None = None  # said once, e.g. a replay that matched no saved transport state
    _log: ReceiveLog | None = None

    def unsaved_batches(self) -> Iterator[LoggedBatch]:
        """Logged batches the restored replay lacks, in arrival order; `positions` move past each one."""
        if self._log is None:
            return
        for batch in self._log:
            key = (batch.actor_id, batch.session)
            if batch.seq < self.positions.get(key, 0):
                continue  # already in the saved replay
            self.positions[key] = batch.seq + 1
            yield batch

    def stream_positions(self) -> list:
        return [StreamPosition(actor, session, seq) for (actor, session), seq in self.positions.items()]


class ResumableRun:
    """The persistence of one learner's run directory. `meta` (JSON) is stored with every checkpoint."""

    def __init__(self, run_dir: Path, *, keep: int, save_replay: bool, meta: Mapping[str, Any]):
        self.run_dir = Path(run_dir)
        self.save_replay = save_replay
        self.meta = dict(meta)
        self.checkpoints = Checkpointer(self.run_dir / "checkpoints", keep=keep)
        # Batches acknowledged since the last save live here until the next one.
        self.receive_log = ReceiveLog(self.run_dir / "receive_log") if save_replay else None
        self._log_seconds = 0.0

    def log_received(self, actor_id: str, session: int, seq: int, records: Mapping[str, np.ndarray]) -> None:
        """Write-ahead: call before acknowledging a batch, so a crash cannot lose it."""
        if self.receive_log is not None:
            start = time.perf_counter()
            self.receive_log.append(actor_id, session, seq, records)
            self._log_seconds += time.perf_counter() - start

    def take_log_seconds(self) -> float:
        """Seconds spent writing the receive log since the last call."""
        seconds, self._log_seconds = self._log_seconds, 0.0
        return seconds

    def restore(self, template: Any) -> Restored:
        out = Restored(step=None, state=template, key_seed=None, counters={}, replay=None, positions={})
        step = self.checkpoints.latest_step()
        if step is not None:
            intact = self.checkpoints.restore_intact(template)  # none intact: CheckpointNotFoundError names them
            step = out.step = intact.step
            out.state, meta = intact.state, intact.meta
            if intact.damaged:
                # Out of the way of the next saves (which would otherwise update a damaged step's meta in place).
                aside_dir = self.run_dir / "damaged_checkpoints"
                aside = [self.checkpoints.set_aside(s, aside_dir) for s in self.checkpoints.steps() if s > step]
                out.warning = f"{intact.fallback_note()}; moved to {', '.join(map(str, aside))}"
            try:
                out.counters = {name: int(value) for name, value in meta["counters"].items()}
                out.key_seed = int(meta["key_seed"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                path = self.checkpoints.directory / str(step) / "meta" / "metadata"
                raise CheckpointNotFoundError(f"{path} lacks the learner's counters or key seed ({e!r})") from None
        replay_dir = existing_directory(self.run_dir / "replay")
        replay_state = None
        if step is not None and replay_dir is not None and self.save_replay:
            try:
                replay = ReplayBuffer.restore(replay_dir)
            except (ValueError, OSError, KeyError) as e:
                replay = None
                out.warning = (out.warning + "; " if out.warning else "") + (
                    f"the saved replay in {replay_dir} cannot be read ({type(e).__name__}: {str(e)[:300]}); "
                    "starting with an empty replay"
                )
            replay_state = None if replay is None else load_replay_state(self.run_dir, replay.total_inserted)
            if replay is not None and replay_state is None:
                out.warning = (out.warning + "; " if out.warning else "") + (
                    f"the saved replay ({replay.total_inserted} records) matches no saved transport state; "
                    "starting with an empty replay"
                )
        if replay_state is not None:
            out.replay = replay
            out.positions = {(p["actor_id"], p["session"]): int(p["next_seq"]) for p in replay_state["positions"]}
            # The data counters were saved with the replay they describe (the orbax meta may be a save older).
            out.counters.update({name: int(value) for name, value in replay_state["counters"].items()})
            out._log = self.receive_log
        elif self.receive_log is not None:
            self.receive_log.clear()  # nothing to add them to: a fresh replay
        return out

    def save(
        self,
        state: Any,
        counters: Mapping[str, int],
        key_seed: int,
        replay: Any,
        positions: list,
        *,
        inserts_paused: bool = False,  # the caller keeps inserts out meanwhile (ReplayBuffer.save)
    ) -> None:
        """Replay, its transport `positions` and data counters, then training state and meta (module doc)."""
        updates = int(counters["updates"])
        if self.save_replay:
            replay_state = {
                "total_inserted": int(replay.total_inserted),
                "positions": [dataclasses.asdict(p) for p in positions],
                "counters": {k: int(v) for k, v in counters.items() if k != "updates"},
            }
            pending = self.run_dir / REPLAY_STATE_PENDING
            pending.write_text(json.dumps(replay_state))
            replay.save(self.run_dir / "replay", inserts_paused=inserts_paused)
            os.replace(pending, self.run_dir / REPLAY_STATE)
            self.receive_log.clear()
        meta = {"counters": {k: int(v) for k, v in counters.items()}, "key_seed": int(key_seed), **self.meta}
        if self.checkpoints.latest_step() == updates:
            # No update since that save (e.g. a stop right after a periodic checkpoint): the training state is
            # the saved one; only the data counters and the key moved on, and they live in the meta.
            self.checkpoints.replace_meta(updates, meta)
        else:
            self.checkpoints.save(updates, state, meta)

    def close(self) -> None:
        self.checkpoints.close()
