"""What a user sees when a node cannot do its job: one clear line and a non-zero exit, or a periodic notice.

The node mains run as processes (`python -m ...`), as the launchers run them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = ["--env", "serl_gs/CartpoleBalance-v0", "--episode_length", "20"]


def _node(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_a_taken_port_is_one_line_naming_the_port_and_the_flag(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = _node("learners.learner", *ENV, "--run_dir", str(tmp_path / "run"), "--port", str(port))
        out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT, env=_env())
    assert out.returncode == 2, out.stdout[-1500:] + out.stderr[-1500:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: port {port} (transitions_port: --port {port}) on 127.0.0.1 is already in use; choose another "
        "--port (the learner takes it and the next two) or stop the program holding it"
    ], out.stderr[-1500:]
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_an_actor_whose_learner_never_comes_up_says_so_periodically(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nobody listens here
    args = _node(
        "actors.actor", *ENV, "--port", str(port), "--num_envs", "2", "--log_every_s", "1", "--away_buffer_mb", "1"
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=_env())
    notices: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while len(notices) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "is unreachable since" in line:
                notices.append(line.strip())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert len(notices) == 2, notices  # periodically, also once its buffer is full and it waits
    assert f"the learner at 127.0.0.1:{port} is unreachable since" in notices[0]
    assert "MiB buffered for it (at most 1 MiB" in notices[0]
