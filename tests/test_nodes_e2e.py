"""End to end: the real launchers (run_learner.sh, run_actor.sh, run_eval.sh) as processes on localhost.

Tiny sizes (cartpole, 2 envs per actor, small networks) so the whole file runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from serl_gs.nodes.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ENV = "serl_gs/CartpoleBalance-v0"
TINY_AGENT = [
    "--hidden_dims",
    "32",
    "32",
    "--critic_ensemble_size",
    "2",
    "--batch_size",
    "32",
    "--critic_actor_ratio",
    "2",
]


def _free_port_base() -> int:
    """A port p with p, p+1, p+2 free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 2 > 65535:
            continue
        try:
            for p in (base + 1, base + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no three consecutive free ports")


def _start(script: str, args: list[str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [str(ROOT / script), *args],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,  # noqa: SIM115
    )


def _wait_for(predicate, timeout: float, what: str, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p, log in zip(procs, logs, strict=True):
            if p.poll() is not None:
                raise AssertionError(
                    f"{log.name} exited with {p.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}"
                )
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def _learner_args(run_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        "--env", ENV, "--episode_length", "50", "--run_dir", str(run_dir), "--port", str(port),
        "--training_starts", "100", "--utd", "0.5", "--publish_every", "5", "--checkpoint_every", "40",
        "--log_every_s", "1", "--replay_capacity", "20000", *TINY_AGENT, *extra,
    ]  # fmt: skip


def _actor_args(actor_id: str, run_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        "--env", ENV, "--episode_length", "50", "--actor_id", actor_id, "--port", str(port), "--num_envs", "2",
        "--random_steps", "50", "--log_every_s", "1", "--run_dir", str(run_dir), *extra,
    ]  # fmt: skip


def _updates(run_dir: Path, since: float = 0.0) -> int:
    """The learner's newest logged update count, from rows written after `since` (a time.time())."""
    rows = [r for r in read_metrics(run_dir / "learner_metrics.jsonl") if r["time"] > since]
    return int(rows[-1]["updates"]) if rows else 0


def _checkpoint_steps(run_dir: Path) -> list[int]:
    """Finished checkpoints only: orbax writes into a temporary directory and renames it to the step."""
    directory = run_dir / "checkpoints"
    return [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []


def _actor_steps(run_dir: Path, actor_id: str) -> int:
    rows = read_metrics(run_dir / f"actor_{actor_id}_metrics.jsonl")
    return int(rows[-1]["env_steps"]) if rows else 0


def _actor_version(run_dir: Path, actor_id: str) -> int:
    rows = read_metrics(run_dir / f"actor_{actor_id}_metrics.jsonl")
    return int(rows[-1].get("param_version", -1)) if rows else -1


def _stored(run_dir: Path, actor_id: str, since: float) -> int:
    """Records of `actor_id` the learner has stored, as its newest metric row written after `since` says."""
    rows = [r for r in read_metrics(run_dir / "learner_metrics.jsonl") if r["time"] > since]
    return int(rows[-1].get(f"records/{actor_id}", 0)) if rows else 0


def _final_actor_counters(log: Path, actor_id: str) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith(f"[actor {actor_id}] final: "):
            return json.loads(line.split("final: ", 1)[1])
    raise AssertionError(f"no final counters in {log.name}:\n{log.read_text()[-2000:]}")


@pytest.mark.slow
def test_learner_two_actors_kills_resume_and_eval(tmp_path):
    run_dir, port = tmp_path / "run", _free_port_base()
    logs = {name: tmp_path / f"{name}.log" for name in ("learner", "learner2", "a0", "a1", "eval")}
    learner = _start("run_learner.sh", _learner_args(run_dir, port), logs["learner"])
    a0 = _start("run_actor.sh", _actor_args("a0", run_dir, port), logs["a0"])
    a1 = _start("run_actor.sh", _actor_args("a1", run_dir, port, "--seed", "1"), logs["a1"])
    procs = [learner, a0, a1]
    try:
        # Updates happen and fresh parameters reach both actors.
        watch = ([learner, a0, a1], [logs["learner"], logs["a0"], logs["a1"]])
        _wait_for(lambda: _updates(run_dir) >= 60, 240, "60 updates", *watch)
        _wait_for(lambda: min(_actor_version(run_dir, "a0"), _actor_version(run_dir, "a1")) > 0, 120,
                  "both actors to act with published parameters", *watch)  # fmt: skip
        # The learner logs an actor's lag once a batch acted with published parameters has reached it.
        _wait_for(lambda: any("param_lag/a0" in r for r in read_metrics(run_dir / "learner_metrics.jsonl")), 60,
                  "the learner to log the parameter version lag per actor", *watch)  # fmt: skip

        # kill -9 one actor: the learner keeps training on the other.
        a1.send_signal(signal.SIGKILL)
        a1.wait(10)
        after_kill = _updates(run_dir)
        watch = ([learner, a0], [logs["learner"], logs["a0"]])
        _wait_for(lambda: _updates(run_dir) >= after_kill + 40, 120, "updates after an actor died", *watch)
        _wait_for(lambda: _checkpoint_steps(run_dir), 120, "a finished checkpoint", *watch)

        # kill -9 the learner, start it again: it resumes from its checkpoint and the actor reconnects.
        learner.send_signal(signal.SIGKILL)
        learner.wait(10)
        checkpointed = max(_checkpoint_steps(run_dir))
        away_from = _actor_steps(run_dir, "a0")
        _wait_for(lambda: _actor_steps(run_dir, "a0") >= away_from + 100, 60,
                  "the actor to keep acting while the learner is away", [a0], [logs["a0"]])  # fmt: skip
        restarted_at = time.time()
        learner = _start("run_learner.sh", _learner_args(run_dir, port), logs["learner2"])
        procs = [learner, a0]
        watch = ([learner, a0], [logs["learner2"], logs["a0"]])
        _wait_for(lambda: f"resumed from checkpoint {checkpointed}" in logs["learner2"].read_text(), 120,
                  "the restarted learner to resume", *watch)  # fmt: skip
        # Only the restarted learner's rows count: the killed one may have logged past checkpointed + 20.
        _wait_for(lambda: _updates(run_dir, since=restarted_at) >= checkpointed + 20, 180,
                  "updates after the restart", *watch)  # fmt: skip
        after_restart = [r for r in read_metrics(run_dir / "learner_metrics.jsonl") if r["time"] > restarted_at]
        assert after_restart and min(r["updates"] for r in after_restart) >= checkpointed  # continued, not reset

        # Eval on the run directory while the learner is still running (and checkpointing): JSON and a video.
        out = tmp_path / "eval"
        ev = subprocess.run(
            [str(ROOT / "run_eval.sh"), "--checkpoint", str(run_dir), "--num_envs", "2", "--episodes", "2",
             "--video_episodes", "1", "--video_size", "32", "--out_dir", str(out)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["episodes"] == 2 and summary["step"] >= checkpointed
        assert (out / "eval.mp4").stat().st_size > 1000
        assert "[eval] step" in ev.stdout
        assert "[eval] episodes 2/2 (return " in ev.stdout  # the progress line, always said at the end (serl_gs.logs)

        # Graceful stops: the actor flushes, the learner writes a final checkpoint.
        a0.send_signal(signal.SIGINT)
        assert a0.wait(60) == 0, logs["a0"].read_text()[-2000:]
        sent = _final_actor_counters(logs["a0"], "a0")["records_sent"]
        _wait_for(lambda: _stored(run_dir, "a0", since=restarted_at) >= sent, 60,
                  "the learner to store what the actor flushed", [learner], [logs["learner2"]])  # fmt: skip
        learner.send_signal(signal.SIGINT)
        assert learner.wait(60) == 0, logs["learner2"].read_text()[-2000:]
        final_step = max(_checkpoint_steps(run_dir))
        meta = json.loads((run_dir / "checkpoints" / str(final_step) / "meta" / "metadata").read_text())
        # Every record a0 sent was stored exactly once, across the learner's crash and restart.
        assert meta["counters"]["records/a0"] == sent, (meta["counters"], sent)
        assert meta["counters"]["updates"] == final_step > checkpointed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_pixel_path_end_to_end_at_32px(tmp_path):
    run_dir, port = tmp_path / "run", _free_port_base()
    pixels = ["--obs_mode", "pixels", "--image_size", "32"]
    logs = [tmp_path / "learner.log", tmp_path / "actor.log"]
    # A relative --run_dir, as users type it, from another working directory than the repository.
    learner_args = _learner_args(Path("run"), port, *pixels, "--max_updates", "20")
    learner = _start("run_learner.sh", learner_args, logs[0], cwd=tmp_path)
    actor_args = _actor_args("px", run_dir, port, *pixels, "--render_backend", "reference", "--randomize", "light")
    actor = _start("run_actor.sh", actor_args, logs[1])
    try:
        assert learner.wait(420) == 0, logs[0].read_text()[-3000:]
        steps = sorted(_checkpoint_steps(run_dir))
        assert steps and steps[-1] == 20
        replay_meta = json.loads((run_dir / "replay" / "index" / "meta.json").read_text())  # data.replay layout
        assert ["pixels/fixed", [32, 32, 3], "uint8"] in replay_meta["spec"]["obs"]
        assert json.loads((run_dir / "actor_px_config.json").read_text())["env"]["randomize"] == "light"
        # The learner is gone: Ctrl-C still stops the actor promptly (it does not hang on a blocked send).
        actor.send_signal(signal.SIGINT)
        assert actor.wait(60) == 0, logs[1].read_text()[-2000:]
    finally:
        for p in (actor, learner):
            if p.poll() is None:
                p.kill()
    out = tmp_path / "eval"
    ev = subprocess.run(
        [str(ROOT / "run_eval.sh"), "--checkpoint", str(run_dir / "checkpoints" / "20"), "--num_envs", "2",
         "--episodes", "2", "--video_episodes", "1", "--video_size", "32", "--render_backend", "reference",
         "--out_dir", str(out), "--randomize", "strong"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["obs_mode"] == "pixels" and summary["randomize"] == "strong"
    assert (out / "eval.mp4").exists()


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("run_learner.sh", ["--no_such_flag=1"], "Unrecognized options: --no_such_flag=1"),
        ("run_eval.sh", ["--checkpoint", "/nonexistent/run"], "checkpoint path '/nonexistent/run' does not exist"),
        ("run_eval.sh", [], "Missing from run_eval.sh: --checkpoint"),
        ("run_actor.sh", ["--env", "serl_gs/NoSuchTask-v0", "--max_steps", "1"], "NoSuchTask"),
        ("run_learner.sh", ["--utd", "0", "--run_dir", "/tmp/serl_gs_bad_utd"], "utd must be positive, got 0.0"),
    ],
)
def test_bad_input_exits_nonzero_with_a_clear_error(script, args, message):
    out = subprocess.run([str(ROOT / script), *args], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 2, out.stdout[-1500:] + out.stderr[-1500:]
    last = out.stderr.strip().splitlines()[-1]  # one line: "error: ..." naming the bad input
    assert last.startswith("error: ") and message in last, out.stdout[-1500:] + out.stderr[-1500:]
    assert "Traceback" not in out.stderr


def test_launchers_document_every_flag():
    out = subprocess.run([str(ROOT / "run_learner.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    for flag in ("--training_starts", "--utd", "--publish_every", "--checkpoint_every", "--bind", "--run_dir"):
        assert flag in out.stdout
