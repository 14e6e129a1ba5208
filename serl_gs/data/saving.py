"""Whole-directory saves that a crash cannot leave half-written: write beside, then rename in.

`replace_directory(tmp, final)` moves a fully written folder into place keeping a valid copy at every moment
but one rename; `existing_directory(final)` finds that copy after a crash fell between the two renames.
Used by the replay's save (serl_gs.data.replay) and read back by the learner's resume (serl_gs.nodes.resume).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _old(final: Path) -> Path:
    return final.with_name(final.name + ".old")


def replace_directory(tmp: Path, final: Path) -> None:
    """Moves a fully written folder `tmp` to `final`, keeping a valid `final` at every moment but one rename."""
    old = _old(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def existing_directory(final: Path) -> Path | None:
    """`final`, or its `.old` twin when a crash fell between the two renames of `replace_directory`."""
    old = _old(final)
    if final.exists():
        return final
    return old if old.exists() else None
