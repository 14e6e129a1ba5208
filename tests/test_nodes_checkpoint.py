"""Learner checkpoints (serl_gs.nodes.checkpoint): keep the last K, restore, rewrite a meta, skip damaged ones."""

from __future__ import annotations

import threading
from pathlib import Path

import jax
import pytest

from serl_gs.nodes.checkpoint import CheckpointDamaged, Checkpointer, CheckpointNotFoundError, checkpoint_root


def test_checkpointer_keeps_the_last_k_and_restores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative run directory, as users type it (orbax wants absolute paths)
    ckpt = Checkpointer(Path("run") / "checkpoints", keep=2)
    tree = {"w": jax.numpy.arange(3.0), "step": jax.numpy.int32(0)}
    for step in (1, 2, 3):
        ckpt.save(step, {**tree, "step": jax.numpy.int32(step)}, {"counters": {"updates": step}})
    assert ckpt.steps() == [2, 3]
    step, state, meta = ckpt.restore(tree)
    assert step == 3 and int(state["step"]) == 3 and meta["counters"]["updates"] == 3
    ckpt.close()
    assert checkpoint_root(tmp_path / "run") == ((tmp_path / "run" / "checkpoints").resolve(), None)
    assert checkpoint_root(tmp_path / "run" / "checkpoints" / "2")[1] == 2
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        checkpoint_root(tmp_path / "nope")
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint for step 1"):
        Checkpointer(tmp_path / "run" / "checkpoints", read_only=True).restore(tree, 1)


def test_a_second_save_of_a_step_updates_its_meta_only(tmp_path):
    # A learner stopped right after a periodic checkpoint saves the same update count again: orbax refuses a
    # step twice, so only the meta (data counters, key) is rewritten; the restored state is the saved one.
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    tree = {"w": jax.numpy.arange(3.0)}
    ckpt.save(5, tree, {"counters": {"inserted": 10}})
    ckpt.replace_meta(5, {"counters": {"inserted": 12}})
    step, state, meta = ckpt.restore(tree)
    assert step == 5 and meta["counters"]["inserted"] == 12
    assert ckpt.restore_meta(5)[1] == meta and (state["w"] == tree["w"]).all()
    with pytest.raises(CheckpointNotFoundError, match="step 6"):
        ckpt.replace_meta(6, meta)
    ckpt.close()


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("")


@pytest.mark.parametrize("how", ["truncate", "empty_meta"])
def test_a_damaged_checkpoint_is_named_and_the_previous_intact_one_restored(tmp_path, how):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=3)
    tree = {"w": jax.numpy.arange(64.0), "step": jax.numpy.int32(0)}
    for step in (1, 2, 3):
        ckpt.save(step, {**tree, "step": jax.numpy.int32(step)}, {"counters": {"updates": step}})
    step_dir = tmp_path / "checkpoints" / "3"
    if how == "truncate":
        victim = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    else:
        victim = step_dir / "meta" / "metadata"
    _damage(victim, how)
    intact = ckpt.restore_intact(tree)
    assert intact.step == 2 and int(intact.state["step"]) == 2 and intact.meta["counters"]["updates"] == 2
    assert str(victim) in intact.fallback_note()  # the file is named
    with pytest.raises(CheckpointDamaged, match=str(victim)):
        ckpt.restore(tree, 3)
    for step in (1, 2):  # none intact: one error naming every damaged file
        _damage(tmp_path / "checkpoints" / str(step) / "meta" / "metadata", "empty")
    with pytest.raises(CheckpointNotFoundError, match="no intact checkpoint") as none:
        ckpt.restore_intact(tree)
    assert "1/meta/metadata is empty" in str(none.value) and "\n" not in str(none.value)
    ckpt.close()


def test_a_reader_opens_and_restores_while_the_learner_saves_and_deletes(tmp_path):
    # Eval on a running learner's directory: between orbax's listing of the steps and its stat of each, the
    # learner (keeping the last K) may delete one. CI hit it once (FileNotFoundError naming the step folder).
    tree = {"w": jax.numpy.zeros((128, 128)), "step": jax.numpy.int32(0)}
    writer = Checkpointer(tmp_path / "checkpoints", keep=1)
    writer.save(0, tree, {"counters": {"updates": 0}})
    saved, stop = [0], threading.Event()

    def save_forever():
        while not stop.is_set():
            saved[0] += 1
            writer.save(saved[0], {**tree, "step": jax.numpy.int32(saved[0])}, {"counters": {"updates": saved[0]}})

    thread = threading.Thread(target=save_forever)
    thread.start()
    try:
        restored = []
        while len(restored) < 40 or saved[0] < 40:  # by progress: enough reads across enough deletions
            reader = Checkpointer(tmp_path / "checkpoints", read_only=True)
            try:
                intact = reader.restore_intact(tree)
            finally:
                reader.close()
            assert not intact.damaged  # a deleted step is not a damaged one
            assert int(intact.state["step"]) == intact.step == intact.meta["counters"]["updates"]
            restored.append(intact.step)
    finally:
        stop.set()
        thread.join()
    writer.close()
    assert restored == sorted(restored) and restored[-1] > restored[0]  # newest each time, while saves went on
