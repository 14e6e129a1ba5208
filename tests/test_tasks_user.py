"""The task registry (serl_gs/tasks.py) and a user's own task: registered from a module outside the package,
resolved by gymnasium's `module:id` form, trained through the real launchers (docs/tasks.md, "Write a task")."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from serl_gs import tasks

ROOT = Path(__file__).resolve().parents[1]
TASK_DOC = ROOT / "docs" / "tasks.md"


def _user_task_source() -> str:
    """The first Python block of docs/tasks.md's "Write a task": the test runs what the page shows."""
    section = TASK_DOC.read_text().split("## Write a task", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture()
def user_module(tmp_path, monkeypatch) -> Path:
    """The doc's task as a module `point_reach` in a folder of its own, importable as the user's would be."""
    (tmp_path / "point_reach.py").write_text(_user_task_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_library_never_imports_the_tasks_or_the_nodes_above_it():
    upward = {"envs", "actors", "learners"}
    found = []
    for path in sorted((ROOT / "serl_gs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in upward]
    assert found == []


def test_default_ids_load_the_envs_module_by_name_in_a_fresh_process():
    code = (
        "import sys; from serl_gs import tasks; assert 'envs' not in sys.modules; "
        "print(tasks.resolve_task('serl_gs/CartpoleBalance-v0'), tasks.resolve_task('PandaPickCube-v0'), "
        "'envs' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["serl_gs/CartpoleBalance-v0", "serl_gs/PandaPickCube-v0", "True"]


def test_a_user_module_registers_through_the_module_id_form(user_module):
    assert tasks.resolve_task("point_reach:PointReach-v0") == "PointReach-v0"
    assert gym.spec("PointReach-v0").kwargs == {"task": "PointReach-v0", "task_module": "point_reach"}
    vec = gym.make_vec("point_reach:PointReach-v0", num_envs=3, physics="mujoco", array_backend="numpy")
    obs, _ = vec.reset(seed=0)
    assert obs["state"].shape == (3, 4)
    _, reward, *_ = vec.step(np.zeros((3, 2), np.float32))
    assert reward.shape == (3,) and np.all((reward > 0) & (reward <= 1))
    vec.close()
    # Pixel defaults come before the user's options: the puck's position is left for the images.
    assert tasks.make_task_for("PointReach-v0", "pixels").observation_shapes()["state"].shape == (2,)
    assert tasks.make_task_for("PointReach-v0", "pixels", position_in_state=True).config.position_in_state
    # The same classes again (a module imported twice) is a no-op; another task under the id is refused.
    import point_reach

    tasks.register_task("PointReach-v0", point_reach.PointReach, point_reach.PointReachConfig)
    with pytest.raises(ValueError, match="'PointReach-v0' is already registered to PointReach from point_reach"):
        tasks.register_task("PointReach-v0", point_reach.PointReach, OtherConfig)


@dataclasses.dataclass(frozen=True)
class OtherConfig:
    episode_length: int = 5


class NotADataclass:
    pass


def test_bad_ids_and_registrations_name_the_bad_value(user_module):
    with pytest.raises(ValueError, match=r"unknown task 'serl_gs/Nope-v0'; registered: \[.*'serl_gs/Cartpole"):
        tasks.resolve_task("serl_gs/Nope-v0")
    with pytest.raises(ValueError, match="unknown task 'Nope-v0' after importing 'point_reach'"):
        tasks.resolve_task("point_reach:Nope-v0")
    with pytest.raises(ValueError, match="task 'no_such_module:X-v0' names module 'no_such_module', but module"):
        tasks.resolve_task("no_such_module:X-v0")
    import point_reach

    good = (point_reach.PointReach, point_reach.PointReachConfig)
    with pytest.raises(ValueError, match="without a module, got 'm:Id-v0'"):
        tasks.register_task("m:Id-v0", *good)
    with pytest.raises(ValueError, match="'no version' is not a gymnasium id"):
        tasks.register_task("no version", *good)
    with pytest.raises(ValueError, match="must be a subclass of serl_gs.mjx_env.Task, got <class 'int'>"):
        tasks.register_task("Bad-v0", int, point_reach.PointReachConfig)
    with pytest.raises(ValueError, match="config_cls of 'Bad-v0' must be a dataclass"):
        tasks.register_task("Bad-v0", point_reach.PointReach, NotADataclass)
    with pytest.raises(ValueError, match=r"name options \['colour'\] that PointReachConfig lacks"):
        tasks.register_task("Bad-v0", *good, pixel_defaults={"colour": 1})
    with pytest.raises(ValueError, match="'CartPole-v1' is already a gymnasium id"):
        tasks.register_task("CartPole-v1", *good)
    assert "Bad-v0" not in tasks.registered_tasks() and "Bad-v0" not in gym.registry


@pytest.mark.parametrize(
    "final, expected",
    [
        ({"training_success": 0.75, "episodes_ended": 90, "episodes_with_success": 90}, "episodes 75%,"),
        ({"training_success": None, "episodes_ended": 116, "episodes_with_success": 0},
         "episodes n/a: the task reports no `success` (116 episodes ended without one),"),
        ({"training_success": None, "episodes_ended": 10, "episodes_with_success": 10},
         "episodes n/a (window not yet full: 10 of 64 episodes),"),
    ],
)  # fmt: skip
def test_the_stop_line_says_when_a_task_reports_no_success(final, expected):
    from learners.learner import _ended_by

    config = SimpleNamespace(success_window=64, stop_success=0.0, stop_return=0.0, max_updates=300, max_seconds=0.0,
                             stop_on="training", eval_window=8)  # fmt: skip
    line = _ended_by({**final, "stop_reason": "max_updates", "updates": 300, "seconds": 12.0}, config)
    assert line.startswith("stopped: the update budget (--max_updates 300) is spent; training success over the ")
    assert expected in line


@pytest.mark.parametrize(
    "training_return, shown", [(512.34, "512.3"), (None, "n/a (window not yet full)")], ids=["full", "not_full"]
)
def test_a_run_bounded_by_return_says_where_its_return_stands_and_that_the_task_reports_no_success(
    training_return, shown
):
    from learners.learner import _ended_by

    config = SimpleNamespace(success_window=16, stop_success=0.0, stop_return=800.0, max_updates=0, max_seconds=2400.0,
                             stop_on="training", eval_window=8)  # fmt: skip
    final = {"training_success": None, "training_return": training_return, "episodes_ended": 116,
             "episodes_with_success": 0, "updates": 9000, "seconds": 2400.0}  # fmt: skip
    line = _ended_by({**final, "stop_reason": "max_seconds"}, config)
    assert line == (
        f"stopped: the wall-clock cap (--max_seconds 2400) is reached; training return over the last 16 episodes "
        f"{shown} (--stop_return 800); training success over the last 16 episodes n/a: the task reports no "
        "`success` (116 episodes ended without one), at 9000 updates after 2400 s"
    )
    if training_return is not None:
        line = _ended_by({**final, "training_return": 812.5, "stop_reason": "return"}, config)
        assert line == (
            "stopped: training return over the last 16 episodes 812.5 reached --stop_return 800, at 9000 updates "
            "after 2400 s"
        )


def test_a_run_stopped_by_its_eval_envs_says_so():
    from learners.learner import _ended_by

    config = SimpleNamespace(success_window=16, stop_success=0.0, stop_return=850.0, max_updates=0, max_seconds=2400.0,
                             stop_on="eval", eval_window=4)  # fmt: skip
    final = {"training_return": 801.0, "eval_return": 870.25, "eval_success": None, "episodes_ended": 60,
             "episodes_with_success": 0, "updates": 4000, "seconds": 400.0, "stop_reason": "return"}  # fmt: skip
    assert _ended_by(final, config) == (
        "stopped: eval return over the last 4 eval-env episodes 870.2 reached --stop_return 850, at 4000 updates "
        "after 400 s"
    )


@pytest.mark.slow
def test_a_user_task_trains_through_the_launchers_and_evaluates(user_module):
    """The doc's task, from the user's own folder (not on the package's path): learner, actor and eval run
    it by `--env point_reach:PointReach-v0`; the learner stops at its update budget and says that the task
    reports no success."""
    from test_nodes_e2e import TINY_AGENT, _free_port_base, _start, _wait_for

    run_dir, port, env = user_module / "run", _free_port_base(), "point_reach:PointReach-v0"
    logs = [user_module / "learner.log", user_module / "actor.log"]
    learner = _start("run_learner.sh", [
        "--env", env, "--run_dir", str(run_dir), "--port", str(port), "--training_starts", "100", "--utd", "1",
        "--max_updates", "300", "--publish_every", "20", "--checkpoint_every", "300", "--log_every_s", "2",
        "--replay_capacity", "5000", *TINY_AGENT,
    ], logs[0], cwd=user_module)  # fmt: skip
    actor = _start("run_actor.sh", [
        "--env", env, "--run_dir", str(run_dir), "--port", str(port), "--num_envs", "2", "--random_steps", "100",
        "--actor_id", "a0", "--log_every_s", "2",
    ], logs[1], cwd=user_module)  # fmt: skip
    try:
        _wait_for(lambda: learner.poll() is not None, 420, "the learner to spend 300 updates", [actor], logs[1:])
        text = logs[0].read_text()
        assert learner.returncode == 0, text[-3000:]
        assert "stopped: the update budget (--max_updates 300) is spent" in text
        assert "n/a: the task reports no `success` (" in text, text[-1500:]
        stop = json.loads((run_dir / "training_stop.json").read_text())  # what the demo scripts print
        assert stop["stop_reason"] == "max_updates" and stop["updates"] == 300 and stop["line"] in text
    finally:
        for p in (actor, learner):
            if p.poll() is None:
                p.kill()
    out = user_module / "eval"
    ev = subprocess.run(
        [str(ROOT / "run_eval.sh"), "--checkpoint", str(run_dir), "--num_envs", "2", "--episodes", "2",
         "--video_episodes", "1", "--video_size", "32", "--out_dir", str(out)],
        capture_output=True, text=True, timeout=300, cwd=user_module,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == env and summary["episodes"] == 2 and summary["step"] == 300
    assert (out / "eval.mp4").stat().st_size > 1000
