"""Unit tests of the node pieces: rate limiter, receive log, replay state, checkpoints, eval statistics, payloads."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from serl_gs.nodes.checkpoint import CheckpointDamaged, Checkpointer, CheckpointNotFoundError, checkpoint_root
from serl_gs.nodes.evaluation import summarize
from serl_gs.nodes.rate_limiter import RateLimiter, RateLimiterConfig
from serl_gs.nodes.receive_log import ReceiveLog
from serl_gs.nodes.resume import ResumableRun


def test_rate_limiter_holds_the_ratio_and_never_blocks_both_sides():
    limiter = RateLimiter(RateLimiterConfig(utd=0.5, min_inserts=100, tolerance=10))
    assert not limiter.can_update(99, 0) and limiter.can_insert(99, 0)
    for inserted in range(0, 2000, 7):
        for updates in range(0, 1000, 13):
            assert limiter.can_update(inserted, updates) or limiter.can_insert(inserted, updates)
    # Far behind the data: the learner may update, actors must wait; far ahead: the reverse.
    assert limiter.can_update(1100, 100) and not limiter.can_insert(1100, 100)
    assert not limiter.can_update(200, 100) and limiter.can_insert(200, 100)
    with pytest.raises(ValueError, match="tolerance must be >= 0.5"):
        RateLimiterConfig(tolerance=0.1)


def test_receive_log_round_trips_batches_in_order_and_clears(tmp_path):
    log = ReceiveLog(tmp_path / "log")
    batches = []
    for seq in range(3):
        records = {
            "env_index": np.arange(2, dtype=np.int32),
            "obs/state": np.random.default_rng(seq).normal(size=(2, 5)).astype(np.float32),
            "obs/pixels/front": np.full((2, 4, 4, 3), seq, np.uint8),
            "is_first": np.array([seq == 0, False]),
        }
        log.append("a0", 7, seq, records)
        batches.append(records)
    reopened = ReceiveLog(tmp_path / "log")  # as after a crash
    got = list(reopened)
    assert [(b.actor_id, b.session, b.seq) for b in got] == [("a0", 7, 0), ("a0", 7, 1), ("a0", 7, 2)]
    for logged, sent in zip(got, batches, strict=True):
        assert logged.records.keys() == sent.keys()
        for key in sent:
            np.testing.assert_array_equal(logged.records[key], sent[key])
            assert logged.records[key].dtype == sent[key].dtype
    reopened.append("a1", 1, 0, batches[0])  # numbering continues after the existing entries
    assert len(list(ReceiveLog(tmp_path / "log"))) == 4
    reopened.clear()
    assert list(ReceiveLog(tmp_path / "log")) == []


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


def test_eval_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 1.0, 1.0])
    assert s["episodes"] == 4 and s["return_mean"] == 2.5 and s["success_rate"] == 0.75
    np.testing.assert_allclose(s["return_std"], np.std([1, 2, 3, 4], ddof=1))
    np.testing.assert_allclose(s["return_ci95"], 1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)


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


def test_a_resumed_learner_skips_a_damaged_checkpoint_and_moves_it_aside(tmp_path):
    run = ResumableRun(tmp_path, keep=3, save_replay=False, meta={})
    tree = {"w": jax.numpy.arange(8.0)}
    for step in (10, 20):
        counters = {"updates": step, "transitions": step}
        run.save({"w": tree["w"] + step}, counters, key_seed=step, replay=None, positions=[])
    run.close()
    (tmp_path / "checkpoints" / "20" / "meta" / "metadata").write_text("")
    run = ResumableRun(tmp_path, keep=3, save_replay=False, meta={})
    restored = run.restore(tree)
    assert restored.step == 10 and restored.counters["updates"] == 10 and float(restored.state["w"][0]) == 10.0
    assert "20/meta/metadata is empty" in restored.warning and "using step 10" in restored.warning
    assert run.checkpoints.steps() == [10] and (tmp_path / "damaged_checkpoints" / "20").is_dir()
    run.save({"w": tree["w"] + 20}, {"updates": 20, "transitions": 30}, key_seed=1, replay=None, positions=[])
    assert run.checkpoints.restore_intact(tree).step == 20  # a fresh save, not a meta patch on the damaged one
    run.close()
