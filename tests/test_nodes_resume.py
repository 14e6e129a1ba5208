"""The learner's crash-safe save and resume (serl_gs.nodes.resume)."""

from __future__ import annotations

import json

from serl_gs.nodes.resume import load_replay_state


def test_replay_state_file_matching_the_replay_wins(tmp_path):
    (tmp_path / "replay_state.json").write_text(json.dumps({"total_inserted": 10, "positions": [], "counters": {}}))
    pending = {"total_inserted": 20, "positions": [], "counters": {"records": 20}}
    (tmp_path / "replay_state.pending.json").write_text(json.dumps(pending))
    assert load_replay_state(tmp_path, 20)["counters"] == {"records": 20}  # crash after the replay's rename
    assert load_replay_state(tmp_path, 10)["total_inserted"] == 10  # crash before it
    assert load_replay_state(tmp_path, 30) is None
