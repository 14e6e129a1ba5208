"""The learner's side of the episode extras (serl_gs.data.records): what the actors report where episodes end."""

from __future__ import annotations

import numpy as np


class EpisodeStats:
    """Means of what the actors report at episode ends (`extras/episode_return`, `extras/success`, and from eval
    envs `extras/eval_return`, `extras/eval_success`) between two reports; constant memory, and values that are
    not one finite number per record are left out."""

    NAMES = ("episode_return", "success", "eval_return", "eval_success")

    def __init__(self) -> None:
        self._sum = dict.fromkeys(self.NAMES, 0.0)
        self._count = dict.fromkeys(self.NAMES, 0)
        # Totals since this object was made, kept by `drain`: a task that never reports `success` shows here.
        self.ended = 0
        self.reported = dict.fromkeys(self.NAMES, 0)

    def add(self, records: dict, extras: dict) -> dict[str, np.ndarray]:
        """Takes the values where episodes ended; returns them by name (a name without finite values is absent)."""
        ended = records["terminated"] | records["truncated"]
        if not ended.any():
            return {}
        self.ended += int(ended.sum())
        taken = {}
        for name in self.NAMES:
            value = extras.get(name)
            if value is None or value.ndim != 1:
                continue
            values = value[ended].astype(np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                taken[name] = values
            self._sum[name] += float(values.sum())
            self._count[name] += int(values.size)
            self.reported[name] += int(values.size)
        return taken

    def drain(self) -> dict[str, float]:
        out = {name: self._sum[name] / self._count[name] for name in self.NAMES if self._count[name]}
        self._sum = dict.fromkeys(self.NAMES, 0.0)
        self._count = dict.fromkeys(self.NAMES, 0)
        return out
