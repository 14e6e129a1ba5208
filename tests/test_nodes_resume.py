"""The learner's crash-safe save and resume (serl_gs.nodes.resume)."""

from __future__ import annotations

import json

import jax

from serl_gs.nodes.resume import ResumableRun, load_replay_state


def test_replay_state_file_matching_the_replay_wins(tmp_path):
    (tmp_path / "replay_state.json").write_text(json.dumps({"total_inserted": 10, "positions": [], "counters": {}}))
    pending = {"total_inserted": 20, "positions": [], "counters": {"records": 20}}
    (tmp_path / "replay_state.pending.json").write_text(json.dumps(pending))
    assert load_replay_state(tmp_path, 20)["counters"] == {"records": 20}  # crash after the replay's rename
    assert load_replay_state(tmp_path, 10)["total_inserted"] == 10  # crash before it
    assert load_replay_state(tmp_path, 30) is None


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
