"""The learner's write-ahead log of received batches (serl_gs.nodes.receive_log)."""

from __future__ import annotations

import numpy as np
import pytest

from serl_gs.nodes.receive_log import ReceiveLog, ReceiveLogDamaged


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


def test_receive_log_reads_older_npz_entries_and_names_a_damaged_one(tmp_path):
    records = {"env_index": np.arange(2, dtype=np.int32), "obs/state": np.ones((2, 3), np.float32)}
    np.savez(tmp_path / f"{0:012d}.npz", __actor_id=np.asarray("old"), __session=np.asarray(1), __seq=np.asarray(4),
             **records)  # fmt: skip  (an entry written by an earlier serl_gs)
    log = ReceiveLog(tmp_path)
    log.append("new", 2, 0, records)
    assert [(b.actor_id, b.seq) for b in log] == [("old", 4), ("new", 0)]
    entry = tmp_path / f"{1:012d}.rlog"
    entry.write_bytes(entry.read_bytes()[:-5])  # cut short, as by a power loss
    with pytest.raises(ReceiveLogDamaged, match=f"{entry}"):
        list(ReceiveLog(tmp_path))
