"""Learner checkpoints: orbax for the training state (atomic: written to a temporary folder, then renamed,
so a crash mid-save leaves the previous checkpoint valid), keeping the last K, plus the replay beside them.

Layout of a run directory:
    checkpoints/<step>/state, meta   orbax, one folder per kept step
    checkpoints/<step>/integrity.json  size and SHA-256 of every file of the step, written after it
    replay/ ...                      the replay and what else the learner saves (serl_gs.nodes.resume)

A checkpoint damaged after it was written (a truncated file, an emptied meta) is found by its integrity record
before orbax reads it, and named; `restore_intact` then falls back to the newest intact one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orbax.checkpoint as ocp

INTEGRITY = "integrity.json"
_LISTING_TRIES = 5
T = TypeVar("T")


class CheckpointNotFoundError(FileNotFoundError):
    pass


class CheckpointDamaged(ValueError):
    """One checkpoint cannot be read (a file truncated, missing or changed; a meta that is not JSON): names it."""


@dataclasses.dataclass
class IntactCheckpoint:
    step: int
    state: Any
    meta: dict[str, Any]
    damaged: list[str]  # one line per newer checkpoint that was skipped, naming the file and what is wrong

    def fallback_note(self) -> str | None:
        """What to tell the user when newer checkpoints were skipped, or None."""
        if not self.damaged:
            return None
        return f"skipped {len(self.damaged)} damaged checkpoint(s) ({'; '.join(self.damaged)}); using step {self.step}"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tensorstore_file(message: str) -> str | None:
    """The file a tensorstore/orbax read error names, if any (its messages run to kilobytes of JSON)."""
    files = re.findall(r'local file "([^"]+)"', message)
    return files[-1] if files else None


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


def _listing_retried(list_steps: Callable[[], T]) -> T:
    """`list_steps()`, tried again when a step vanished while it ran.

    orbax lists the folder, then stats each step; a running learner that keeps the last K can delete a step in
    between: FileNotFoundError naming it, or NotADirectoryError when the step vanished between orbax's
    `exists()` and `is_dir()` checks of its folder (seen once in CI under load). Each try races with at most one
    deletion, so a few tries suffice."""
    for _ in range(_LISTING_TRIES - 1):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # vanished while listed: list again
            return list_steps()
    return list_steps()  # the last try's error goes to the caller


class Checkpointer:
    def __init__(self, directory: Path, keep: int = 3, read_only: bool = False):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).expanduser().resolve()  # orbax refuses relative paths
        if read_only:  # (orbax warns when a read-only manager is given save settings)
            options = ocp.CheckpointManagerOptions(
                max_to_keep=None, save_interval_steps=0, create=False, read_only=True, enable_async_checkpointing=False
            )
        else:
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = _listing_retried(lambda: ocp.CheckpointManager(self.directory, options=options))

    def latest_step(self) -> int | None:
        _listing_retried(self._manager.reload)  # another process (a running learner) may have written since
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        _listing_retried(self._manager.reload)
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        self._write_integrity(step)

    def _write_integrity(self, step: int) -> None:
        """Records every file of a finished step (atomically), so damage done later is found before a restore."""
        root = self.directory / str(step)
        files = {
            str(path.relative_to(root)): [path.stat().st_size, _file_digest(path)]
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name not in (INTEGRITY, INTEGRITY + ".tmp")
        }
        tmp = root / (INTEGRITY + ".tmp")
        tmp.write_text(json.dumps({"files": files}))
        os.replace(tmp, root / INTEGRITY)

    def verify(self, step: int) -> None:
        """Raises CheckpointDamaged naming the first file of `step` that is missing, truncated or changed since it
        was written. Checkpoints written before integrity records existed pass (their restore names any damage)."""
        root = self.directory / str(step)
        record = root / INTEGRITY
        if not record.is_file():
            return
        try:
            files = json.loads(record.read_text())["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointDamaged(f"{record} is damaged ({type(e).__name__})") from None
        for name, (size, digest) in files.items():
            path = root / name
            if not path.is_file():
                raise CheckpointDamaged(f"{path} is missing")
            actual = path.stat().st_size
            if actual == 0 and size:
                raise CheckpointDamaged(f"{path} is empty (written with {size} bytes)")
            if actual != size:
                raise CheckpointDamaged(f"{path} is truncated or changed ({actual} bytes, written with {size})")
            try:
                changed = _file_digest(path) != digest
            except OSError as e:  # e.g. deleted since the check above
                raise CheckpointDamaged(f"cannot read {path} ({e.strerror or e})") from None
            if changed:
                raise CheckpointDamaged(f"{path} changed since it was written (its SHA-256 differs)")

    def replace_meta(self, step: int, meta: dict[str, Any]) -> None:
        """Rewrites the meta of an existing step in place (atomically: a new file, then a rename)."""
        path = self.directory / str(step) / "meta" / "metadata"
        if not path.is_file():
            raise CheckpointNotFoundError(f"no checkpoint meta for step {step} at {str(path)!r}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)
        if (self.directory / str(step) / INTEGRITY).is_file():
            self._write_integrity(step)

    def restore(self, template: Any, step: int | None = None) -> tuple[int, Any, dict[str, Any]]:
        """(step, state shaped like `template`, meta) of `step`, default the newest.

        Raises CheckpointDamaged naming the file when that checkpoint cannot be read."""
        step, meta = self.restore_meta(step)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(template))
        try:
            out = self._manager.restore(step, args=args)
        except (ValueError, OSError) as e:  # tensorstore's errors, e.g. a file shorter than its index says
            where = _tensorstore_file(str(e)) or str(self.directory / str(step) / "state")
            raise CheckpointDamaged(f"cannot read {where} ({str(e).split(':', 1)[0]})") from None
        return step, out.state, meta

    def restore_meta(self, step: int | None = None) -> tuple[int, dict[str, Any]]:
        """(step, meta) of `step`, default the newest; CheckpointDamaged names the file if it is not intact."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointNotFoundError(f"no checkpoint in {str(self.directory)!r}")
        if step not in self.steps():
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in {str(self.directory)!r}; have {self.steps()}"
            )
        self.verify(step)
        meta_path = self.directory / str(step) / "meta" / "metadata"
        try:
            text = meta_path.read_text()
        except OSError as e:
            raise CheckpointDamaged(f"cannot read {meta_path} ({e.strerror or e})") from None
        try:
            meta = json.loads(text)
        except ValueError as e:
            what = "is empty" if not text.strip() else f"is not valid JSON ({e})"
            raise CheckpointDamaged(f"{meta_path} {what}") from None
        if not isinstance(meta, dict):
            raise CheckpointDamaged(f"{meta_path} holds {type(meta).__name__}, not a JSON object")
        return step, meta

    def restore_intact(
        self,
        template: Any = None,
        *,
        template_for: Callable[[dict[str, Any]], Any] | None = None,
        step: int | None = None,
    ) -> IntactCheckpoint:
        """The newest checkpoint that reads back whole (or exactly `step`), skipping damaged ones.

        `template_for(meta)` replaces `template` where the state's shape depends on the meta (eval). Raises
        CheckpointNotFoundError naming every damaged file when none is intact (or `step` is damaged).
        """
        damaged: list[str] = []
        tried: set[int] = set()
        while True:
            # Listed afresh each time: a running learner may delete old checkpoints while we read.
            candidates = [s for s in sorted(self.steps(), reverse=True) if s not in tried]
            if step is not None:
                candidates = [step]
            if not candidates or (step is not None and step in tried):
                where = str(self.directory) if step is None else str(self.directory / str(step))
                if damaged:
                    raise CheckpointNotFoundError(f"no intact checkpoint in {where}: {'; '.join(damaged)}")
                raise CheckpointNotFoundError(f"no checkpoint in {where!r}")
            candidate = candidates[0]
            tried.add(candidate)
            try:
                _, meta = self.restore_meta(candidate)
                _, state, meta = self.restore(template if template_for is None else template_for(meta), candidate)
                return IntactCheckpoint(candidate, state, meta, damaged)
            except CheckpointDamaged as e:
                if step is None and self._superseded(candidate, tried):
                    continue  # not damaged: the learner that keeps the last K saved anew and deleted it meanwhile
                damaged.append(f"step {candidate}: {e}")
            except CheckpointNotFoundError:
                if step is not None:
                    raise
                continue  # deleted meanwhile by the learner that keeps the last K

    def _superseded(self, step: int, tried: set[int]) -> bool:
        """Whether a running learner saved a newer step than `step` (not tried yet) or deleted `step` since we
        listed them: then a failed read of `step` says nothing about its files (its deletion removes the files
        one by one, so its folder can outlive them)."""
        now = self.steps()
        return step not in now or any(s > step and s not in tried for s in now)

    def set_aside(self, step: int, where: Path) -> Path:
        """Moves a (damaged) step out of the way of new saves, into `where`; returns its new path."""
        where.mkdir(parents=True, exist_ok=True)
        target = where / str(step)
        suffix = 0
        while target.exists():
            suffix += 1
            target = where / f"{step}.{suffix}"
        shutil.move(str(self.directory / str(step)), str(target))
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()
