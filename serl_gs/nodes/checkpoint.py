"""Learner checkpoints: orbax for the training state (atomic: written to a temporary folder, then renamed,
so a crash mid-save leaves the previous checkpoint valid), keeping the last K, plus the replay beside them.

Layout of a run directory:
    checkpoints/<step>/state, meta   orbax, one folder per kept step
    replay/ ...                      the replay and what else the learner saves (serl_gs.nodes.resume)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class CheckpointNotFoundError(FileNotFoundError):
    pass


def checkpoint_root(path: str | Path) -> tuple[Path, int | None]:
    """A run directory, its checkpoints/ folder, or one step's folder -> (checkpoints folder, step or None)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint path {str(path)!r} does not exist")
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.name.isdigit() and (path / "state").exists():
        return path.parent, int(path.name)
    if path.name == "checkpoints":
        return path, None
    raise CheckpointNotFoundError(
        f"{str(path)!r} is neither a run directory (with checkpoints/) nor a checkpoint step folder"
    )


class Checkpointer:
    def __init__(self, directory: Path, keep: int = 3, read_only: bool = False):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).expanduser().resolve()  # orbax refuses relative paths
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        self._manager.reload()  # another process (a running learner) may have written since
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        self._manager.reload()
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def replace_meta(self, step: int, meta: dict[str, Any]) -> None:
        """Rewrites the meta of an existing step in place (atomically: a new file, then a rename)."""
        path = self.directory / str(step) / "meta" / "metadata"
        if not path.is_file():
            raise CheckpointNotFoundError(f"no checkpoint meta for step {step} at {str(path)!r}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)

    def restore(self, template: Any, step: int | None = None) -> tuple[int, Any, dict[str, Any]]:
        """(step, state shaped like `template`, meta) of `step`, default the newest."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointNotFoundError(f"no checkpoint in {str(self.directory)!r}")
        if step not in self.steps():
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in {str(self.directory)!r}; have {self.steps()}"
            )
        args = ocp.args.Composite(state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore())
        out = self._manager.restore(step, args=args)
        return step, out.state, dict(out.meta)

    def restore_meta(self, step: int | None = None) -> tuple[int, dict[str, Any]]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointNotFoundError(f"no checkpoint in {str(self.directory)!r}")
        meta_path = self.directory / str(step) / "meta" / "metadata"
        if meta_path.exists():
            return step, json.loads(meta_path.read_text())
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return step, dict(out.meta)

    def close(self) -> None:
        self._manager.close()
