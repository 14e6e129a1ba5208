"""The learner's metrics row: what `report()` measures over one logging interval, and the keys the console shows.

`LearnerReport` is one part of `serl_gs.nodes.learner.Learner` (a mixin: the attributes it uses are made in
`Learner.__init__`). A row is taken every `log_every_s` by the loop, written to the metrics log
(serl_gs.nodes.metrics_log) and shown on the console as `CONSOLE_KEYS`.

Why a row describes one interval. Rates are differences of two `counters_snapshot()`s (never a batch half
counted) over the interval's wall time; the interval's accumulators (loop time spent updating, waiting and
saving, background checkpoint seconds, receive-log seconds, mixed batches, episode statistics) are taken and
reset by the same call, so the next row starts from zero and nothing is counted in two rows.
"""

from __future__ import annotations

import collections
from typing import Any

import jax

CONSOLE_KEYS = [
    "updates",
    "transitions",
    "updates_per_s",
    "transitions_per_s",
    "idle_fraction",
    "episode_return",
    "success",
    "eval_return",
    "eval_success",
    "critic_loss",
    "temperature",
    "rejected",
]


class LearnerReport:
    """`report()`: the metrics of the interval since the last one.

    Reads the learner's counters, replay, demos, rate, server, publisher and persistence; takes and resets the
    interval's `_timing`, `_demo_batches`, episode statistics and background checkpoint seconds."""

    def report(self, elapsed: float, since: collections.Counter) -> dict[str, Any]:
        c = self.counters_snapshot()
        busy = self._timing["update_s"] + self._timing["wait_s"]
        metrics: dict[str, Any] = {
            "updates": c["updates"],
            "transitions": c["transitions"],
            **{k: v for k, v in c.items() if k.startswith("records")},  # stored, in all and per actor
            "updates_per_s": (c["updates"] - since["updates"]) / elapsed,
            "transitions_per_s": (c["transitions"] - since["transitions"]) / elapsed,
            "replay_size": self.replay.size,
            "idle_fraction": self._timing["wait_s"] / busy if busy else 0.0,
            "save_fraction": self._timing["save_s"] / elapsed,  # the loop's time spent on checkpoints
            "checkpoint_s": self._take_background_save_s(),  # background checkpoints' time since the last row
            "credits": self._credits,
            "tolerance": self.rate.tolerance,
            "receive_log_s": self.persistence.take_log_seconds(),  # ingest thread's log writes since the last row
        }
        if self.demos is not None:  # RLPD: the share of demo transitions in the batches of this interval
            share = self._demo_count() / self.config.agent.batch_size if self._demo_batches else 0.0
            metrics.update(demo_ratio=share, demo_transitions=self.demos.num_transitions)
        new = c["transitions"] - since["transitions"]
        metrics["intervention_rate"] = (c["intervened"] - since["intervened"]) / new if new else 0.0
        self._demo_batches = 0
        metrics.update({k: float(v) for k, v in jax.device_get(self._metrics).items()})
        with self._counters_lock:
            metrics.update(self._episodes.drain())
        stats = self.server.stats(current_param_version=int(c["updates"]))
        for actor, actor_stats in stats["actors"].items():
            if actor_stats.get("param_lag") is not None:
                metrics[f"param_lag/{actor}"] = actor_stats["param_lag"]
        # Refused input on every port (transitions, parameters, snapshots), by reason.
        rejected = collections.Counter(stats["rejected"]) + collections.Counter(self.publisher.stats()["rejected"])
        metrics.update(
            rejected=sum(rejected.values()),
            duplicates_dropped=stats["duplicates_dropped"],
            bytes_in=stats["bytes_in"],  # record bytes received (wire payload), all actors
            queue_batches=stats["queue_batches"],
        )
        metrics.update({f"rejected/{reason}": n for reason, n in sorted(rejected.items()) if n})
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0, "save_s": 0.0})
        return metrics
