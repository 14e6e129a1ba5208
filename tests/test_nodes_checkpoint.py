"""Learner checkpoints (serl_gs.nodes.checkpoint): keep the last K, restore, rewrite a meta."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

from serl_gs.nodes.checkpoint import Checkpointer, CheckpointNotFoundError, checkpoint_root


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
