"""Logs rejected input without letting a flood of junk flood the log: the first of each reason at
once, then one summary per interval. Counting is the caller's job; this only decides when to speak.
`WindowLimit` bounds how often a costly request (a stats walk, a full parameter snapshot) is answered."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, what: str, interval_s: float) -> None:
        self._logger = logger
        self._what = what
        self._interval_s = interval_s
        self._seen: set[str] = set()
        self._since_last: dict[str, int] = {}
        self._last_summary = time.monotonic()

    def note(self, reason: str, detail: str) -> None:
        if reason not in self._seen:
            self._seen.add(reason)
            self._logger.warning("%s: dropped a message (%s): %s", self._what, reason, detail)
        else:
            self._since_last[reason] = self._since_last.get(reason, 0) + 1
        self.maybe_summarize()

    def maybe_summarize(self) -> None:
        now = time.monotonic()
        if self._since_last and now - self._last_summary >= self._interval_s:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self._since_last.items()))
            self._logger.warning(
                "%s: dropped more messages in the last %.0f s: %s",
                self._what,
                now - self._last_summary,
                counts,
            )
            self._since_last.clear()
            self._last_summary = now


class WindowLimit:
    """At most `per_s` events in each one-second window (what is over is refused, and counted by the caller)."""

    def __init__(self, per_s: int) -> None:
        self.per_s, self._window, self._count = per_s, 0.0, 0

    def allow(self, now: float) -> bool:
        if now - self._window >= 1.0:
            self._window, self._count = now, 0
        self._count += 1
        return self._count <= self.per_s
