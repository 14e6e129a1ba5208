"""The learner's checkpoints: now (`save`), or in the background while the loop goes on updating.

`LearnerCheckpoints` is one part of `serl_gs.nodes.learner.Learner` (a mixin: the attributes it uses are made
in `Learner.__init__`); what a checkpoint holds and how a restart reads it back is serl_gs.nodes.resume's.

Why a checkpoint is consistent though ingest and updates go on. A checkpoint is written under `_ingest_lock`,
which the ingest thread holds around each batch from insert to ack (serl_gs.nodes.learner_ingest): no batch
is between insert and ack and none is inserted, so the replay, the acknowledged transport positions and the
data counters describe the same batches, and the replay is written without its own lock (sampling goes on).
The training state is immutable (each update makes a new one), so the state captured when the checkpoint
starts is written as it was, with the update count taken at that moment and a fresh sampling-key seed that the
loop goes on from too. One checkpoint runs at a time; a background one's error is raised on the loop's thread
at the next wait (`_wait_for_checkpoint`), never lost.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jax

DEMO_REPLAY_DIR = "demo_replay"  # the demo buffer, saved beside the replay (serl_gs.demos.mixing)


class LearnerCheckpoints:
    """`save()` and the background checkpoints of the loop (`_checkpoint_in_background`).

    Reads the learner's state, key, counters, replay, demos, server and persistence, and `_ingest_lock`;
    writes `_timing["save_s"]` and `_background_save_s` (reported by serl_gs.nodes.learner_report)."""

    def save(self) -> None:
        """Checkpoints everything a restarted learner needs (serl_gs.nodes.resume), now: after the background
        checkpoint in progress, if any."""
        start = time.perf_counter()
        self._wait_for_checkpoint()
        self._write_checkpoint(*self._checkpoint_of_now())
        self._timing["save_s"] += time.perf_counter() - start

    def _checkpoint_of_now(self) -> tuple[Any, int, int]:
        """(training state, its update count, a fresh sampling-key seed): what a checkpoint taken now holds."""
        key_seed = int(jax.random.randint(self.key, (), 0, 2**31 - 1))
        self.key = jax.random.PRNGKey(key_seed)
        return self.state, int(self.counters["updates"]), key_seed

    def _write_checkpoint(self, state: Any, updates: int, key_seed: int) -> None:
        # Under the ingest lock no batch is between insert and ack, and none is inserted: the replay, its
        # acknowledged positions and the data counters describe the same batches, and the replay is written
        # without its own lock (sampling goes on). The update count is the state's, taken when it was current.
        with self._ingest_lock:
            if self.demos is not None and self.config.save_replay:  # before the replay: see docs/demos.md (resume)
                self.demos.replay.save(self.run_dir / DEMO_REPLAY_DIR)
            counters = self.counters_snapshot()
            counters["updates"] = updates
            positions = self.server.positions()
            self.persistence.save(state, counters, key_seed, self.replay, positions, inserts_paused=True)

    def _checkpoint_in_background(self) -> None:
        """Starts a checkpoint of the current state on its own thread; the loop goes on updating meanwhile.

        The training state is immutable (each update makes a new one), so the one captured here is written as
        it was. Ingest pauses while the replay is written; actors' credit windows cover the pause."""
        start = time.perf_counter()
        self._wait_for_checkpoint()  # one at a time; a wait here counts as the loop's save time
        captured = self._checkpoint_of_now()

        def write() -> None:
            began = time.perf_counter()
            try:
                self._write_checkpoint(*captured)
            except BaseException as e:  # raised on the loop's thread by the next wait
                self._checkpoint_error = e
            self._background_save_s += time.perf_counter() - began

        self._checkpointer = threading.Thread(target=write, name="serl_gs-learner-checkpoint", daemon=True)
        self._checkpointer.start()
        self._timing["save_s"] += time.perf_counter() - start

    def _wait_for_checkpoint(self) -> None:
        thread, self._checkpointer = self._checkpointer, None
        if thread is not None:
            thread.join()
        if self._checkpoint_error is not None:
            error, self._checkpoint_error = self._checkpoint_error, None
            raise RuntimeError(f"a background checkpoint failed: {error!r}") from error

    def _take_background_save_s(self) -> float:
        seconds, self._background_save_s = self._background_save_s, 0.0
        return seconds
