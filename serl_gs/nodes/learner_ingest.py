"""The learner's ingest: each batch an actor sends is received, checked, stored, logged, acknowledged, credited.

`LearnerIngest` is one part of `serl_gs.nodes.learner.Learner` (a mixin: it owns no state of its own; the
attributes it uses are made in `Learner.__init__`). It runs on the ingest thread (`start_ingest`) or, for a
learner driven by `step()` alone, inside `step()`.

Why a stored batch is whole and counted once. Nothing of a batch is used before `_check` passed it: records of
another schema, or that the replay cannot take (NaN, env_index out of range), are refused, the actor hears why
and its stream stops; the refusal is counted and logged once per actor (at most `_MAX_REFUSED_PEERS_LOGGED`
actors are named, so peers cannot grow the log's memory). A checked batch is inserted, written to the receive
log (serl_gs.nodes.receive_log) and acknowledged under `_ingest_lock`, which a checkpoint also holds
(serl_gs.nodes.learner_checkpoint): a checkpoint sees every batch either stored, logged and acknowledged, or
not at all, so a restarted learner re-inserts exactly the batches acknowledged after its checkpoint. The
counters the loop reads ("records", "transitions", episode statistics) change under `_counters_lock`, so
`counters_snapshot()` never sees a batch half counted. Credits follow the rate limiter from either thread, one
at a time (`_credit_lock`): an actor is never granted credit the limiter has just withheld.
"""

from __future__ import annotations

import collections
import logging
import threading

import numpy as np

from serl_gs.data.records import EXTRAS_PREFIX, describe_records, split_extras
from serl_gs.demos.mixing import INTERVENED, check_intervened

log = logging.getLogger(__name__)
_MAX_REFUSED_PEERS_LOGGED = 1024  # peers named in the log; beyond that refusals are only counted


class LearnerIngest:
    """Receiving into the replay (`receive`, `ingest_one`), on its own thread (`start_ingest`, `stop_ingest`).

    Reads the learner's config, replay, demos, rate, server, persistence, counters, success_window and
    return_window, its locks (`_counters_lock`, `_ingest_lock`, `_credit_lock`, `_arrived`) and the ingest
    thread's fields."""

    def receive(self, timeout: float) -> int:
        """Inserts every batch that arrives within `timeout` s (then whatever is queued); returns records.

        Nothing of a batch is used before it is checked: records of another schema (an actor of another task,
        missing fields) or that the replay cannot take (NaN, env_index out of range) are refused; the actor
        hears why and stops, the refusal is counted (`rejected`) and logged once per actor, training goes on.
        """
        got, wait = 0, timeout
        while True:
            n = self.ingest_one(wait)
            if n is None:
                return got
            wait = 0.0
            got += n

    def ingest_one(self, timeout: float) -> int | None:
        """Receives, validates, inserts, logs and acknowledges one batch; its records (0 if refused), or None
        when none came within `timeout` s. A batch that is one part of a split actor step (wire "part") is
        inserted like any other (serl_gs.nodes.adder says why that is the step, whole)."""
        batch = self.server.get(timeout=timeout, ack=False)
        if batch is None:
            return None
        header = batch.header
        records, extras = split_extras(batch.arrays)
        with self._ingest_lock:
            if not self._check(header, records, extras):
                return 0
            intervened = extras.get(INTERVENED)
            n = self._store(header.actor_id, header.session, records, intervened)
            logged = records if intervened is None else {**records, EXTRAS_PREFIX + INTERVENED: intervened}
            self.persistence.log_received(header.actor_id, header.session, header.seq, logged)
            self.server.ack(header)  # only now may the actor forget it
        with self._counters_lock:
            self.counters["split_batches"] += header.part[1] > 1
            ended = self._episodes.add(records, extras)
            self.success_window.extend(ended.get("success", ()))
            self.return_window.extend(ended.get("episode_return", ()))
            self.eval_success_window.extend(ended.get("eval_success", ()))
            self.eval_return_window.extend(ended.get("eval_return", ()))
        with self._arrived:
            self._arrived.notify_all()
        return n

    # ---- the ingest thread --------------------------------------------------------------------------------
    def start_ingest(self) -> None:
        """Receives on its own thread from now on (`step()` then only waits for data when it cannot update)."""
        if self._ingest_thread is not None:
            return
        self._ingest_stop.clear()
        self._ingest_thread = threading.Thread(target=self._ingest_loop, name="serl_gs-learner-ingest", daemon=True)
        self._ingest_thread.start()

    def stop_ingest(self) -> None:
        """Stops and joins the ingest thread; raises what it died of, if anything."""
        thread, self._ingest_thread = self._ingest_thread, None
        if thread is not None:
            self._ingest_stop.set()
            thread.join()
        self._raise_ingest_error()

    def _raise_ingest_error(self) -> None:
        if self._ingest_error is not None:
            error, self._ingest_error = self._ingest_error, None
            raise RuntimeError(f"the learner's ingest thread failed: {error!r}") from error

    def _ingest_loop(self) -> None:
        try:
            while not self._ingest_stop.is_set():
                if self.ingest_one(timeout=0.05) is not None:
                    self._refresh_credits()
        except BaseException as e:  # surfaced by the loop's next step() and by stop_ingest()
            self._ingest_error = e
            with self._arrived:
                self._arrived.notify_all()

    def _refresh_credits(self) -> None:
        """Credits per actor as the rate limiter says now (from either thread; one at a time)."""
        with self._credit_lock:
            with self._counters_lock:
                transitions, updates = self.counters["transitions"], self.counters["updates"]
            may_insert = self.rate.can_insert(transitions, updates)
            credits = self.config.transport.credits_per_actor if may_insert else 0
            if credits != self._credits:
                self.server.set_credits(credits)
                self._credits = credits

    def _check(self, header, records: dict, extras: dict | None = None) -> bool:
        """True if the replay can take `records`; otherwise refuses the batch (and its stream) and says why."""
        try:
            self.replay.spec.check(records)
        except ValueError as e:
            reason = "schema"
            detail = (
                f"{e}. The actor sends records {describe_records(records)}; this learner ({self._task()}) stores "
                f"{self.replay.spec.describe()}. Start the actor with the learner's env flags"
            )
        else:
            try:
                self.replay.check(records)
                check_intervened((extras or {}).get(INTERVENED), len(records["env_index"]))
                return True
            except ValueError as e:
                reason, detail = "bad_records", str(e)
        self.server.refuse(header, reason, detail)
        peer = header.actor_id
        if peer not in self._refused_peers and len(self._refused_peers) < _MAX_REFUSED_PEERS_LOGGED:
            self._refused_peers.add(peer)
            log.warning("refused actor %r (%s; training goes on): %s", peer, reason, detail)
        return False

    def _task(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.config.env.task().items())

    def _store(self, actor_id: str, session: int, records: dict, intervened: np.ndarray | None = None) -> int:
        self.replay.insert(f"{actor_id}:{session}", records)  # a restarted actor (new session) starts new streams
        if intervened is not None and intervened.any():  # HIL-SERL: corrected steps go to the demo buffer too
            self.counters["intervened"] += int((intervened.astype(bool) & ~records["is_first"]).sum())
            if self.demos is None:  # (without demo files: made at the first intervention, see docs/demos.md)
                self.demos = self._new_demo_buffer()
        if self.demos is not None:  # every message: a run's first transition needs the record before it
            self.demos.add_intervened(f"{actor_id}:{session}", records, intervened)
        n = len(records["env_index"])
        transitions = int((~records["is_first"]).sum())
        with self._counters_lock:
            self.counters["records"] += n
            key = f"records/{actor_id}"
            if key not in self.counters and self._actor_counters >= self.config.transport.max_actors:
                key = "records/(more actors)"
            self._actor_counters += key not in self.counters
            self.counters[key] += n
            self.counters["transitions"] += transitions
        self.rate.observe_batch(actor_id, transitions, self.config.transport.max_actors)
        return n

    def counters_snapshot(self) -> collections.Counter:
        """A copy of `counters` that no concurrent insert is halfway through."""
        with self._counters_lock:
            return collections.Counter(self.counters)
