"""A run directory: the resolved config, the git revision, metric logs and checkpoints of one training run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any


def git_revision(repo: Path | None = None) -> str:
    """The checkout's commit (with "+dirty" when it has local changes), or "unknown" outside git."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_run_info(run_dir: Path, name: str, config: Any) -> None:
    """Writes `<name>_config.json` (the resolved config) and `<name>_git.txt` into the run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{name}_config.json").write_text(json.dumps(to_jsonable(config), indent=2, sort_keys=True) + "\n")
    (run_dir / f"{name}_git.txt").write_text(git_revision() + "\n")
