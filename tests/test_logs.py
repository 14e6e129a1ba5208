"""serl_gs.logs: the nodes' lines as "[node] message" on the stdout of the moment, other libraries quiet."""

from __future__ import annotations

import logging

import pytest

from serl_gs import logs


@pytest.fixture
def restored_logging():
    """`configure` changes process-wide logging: put back what it touches, so later tests (caplog) see records."""
    package, root, absl = logging.getLogger(logs.PACKAGE), logging.getLogger(), logging.getLogger("absl")
    saved = (list(package.handlers), package.level, package.propagate, root.level, absl.level)
    yield
    package.handlers[:] = saved[0]
    package.setLevel(saved[1])
    package.propagate = saved[2]
    root.setLevel(saved[3])
    absl.setLevel(saved[4])


def test_lines_carry_the_node_name_and_go_to_the_current_stdout(restored_logging, capsys):
    logs.configure("actor a0")
    logs.configure("learner")  # a second call replaces the first: one line per record, the newest name
    logging.getLogger("serl_gs.nodes.learner").info("resumed from checkpoint %d: %s", 40, {"updates": 40})
    logging.getLogger("serl_gs.transport.server").warning("dropped a message (%s)", "bad_magic")
    logging.getLogger("serl_gs.vec_env").debug("resets_per_step: 2 (auto: ...)")  # debug: not by default
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "[learner] resumed from checkpoint 40: {'updates': 40}",
        "[learner] warning: dropped a message (bad_magic)",
    ]
    assert out.err == ""


def test_other_libraries_speak_only_at_the_verbosity_asked_for(restored_logging):
    orbax = logging.getLogger("absl")  # orbax logs through absl's logger
    logs.configure("learner")
    assert not orbax.isEnabledFor(logging.WARNING) and orbax.isEnabledFor(logging.ERROR)
    logs.configure("learner", verbosity=-1)  # absl's scale: -1 warnings, 0 info, 1 debug
    assert orbax.isEnabledFor(logging.WARNING) and not orbax.isEnabledFor(logging.INFO)
    logs.configure("learner", verbosity=1)
    assert orbax.isEnabledFor(logging.DEBUG) and logging.getLogger("serl_gs.vec_env").isEnabledFor(logging.DEBUG)
    with pytest.raises(ValueError, match="verbosity must be an integer.*'loud'"):
        logs.configure("learner", verbosity="loud")
    with pytest.raises(ValueError, match="node must be a non-empty name"):
        logs.configure("")


def test_progress_says_each_step_it_reaches_after_the_interval_and_always_the_last(caplog):
    caplog.set_level(logging.INFO, logger="serl_gs")
    progress = logs.Progress(logging.getLogger("serl_gs.nodes.evaluation"), "episodes", 32, every_s=0.0)
    progress(8, "return 1.50, success 50%")
    progress(8)  # no move: no line
    progress(32)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("episodes 8/32 (return 1.50, success 50%), ") and lines[0].endswith(" s left")
    assert lines[1].startswith("episodes 32/32, ") and "left" not in lines[1]
    quiet = logs.Progress(logging.getLogger("serl_gs.nodes.evaluation"), "episodes", 32, every_s=3600.0)
    quiet(8)  # within the interval: only the last is said
    quiet(32)
    assert [r.getMessage().split(",")[0] for r in caplog.records[2:]] == ["episodes 32/32"]
