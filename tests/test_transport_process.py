"""Actors and learners as real processes: kill -9, crash and restart, Ctrl-C, a finished actor exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serl_gs.transport import ActorTransportConfig, LearnerTransportConfig, TransitionClient, TransitionServer

REPO = Path(__file__).resolve().parents[1]

# An actor node: sends `count` batches (forever if < 0), then returns from main without close().
ACTOR = r"""
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # exit_within's stack dump of a node that hangs
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as from a terminal (see SIGINT_AS_FROM_A_TERMINAL)
import numpy as np
from serl_gs.transport import ActorTransportConfig, TransitionClient
port, actor_id, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = ActorTransportConfig(actor_id=actor_id, transitions_port=port, poll_interval_s=0.01,
                           reconnect_s=0.02, reconnect_max_s=0.2)
client = TransitionClient(cfg)
print("ready", flush=True)
step = 0
while count < 0 or step < count:
    client.send({"env_index": np.arange(2, dtype=np.int32), "step": np.full(2, step, np.int64),
                 "frame": np.full((2, 16, 16, 3), step % 256, np.uint8)}, param_version=0)
    step += 1
    time.sleep(0.001)
print("done", flush=True)
"""

# SIGINT_AS_FROM_A_TERMINAL: a test runner started in the background of a non-interactive shell inherits SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler in it or in the nodes it spawns; the nodes
# restore the handler so the Ctrl-C test tests the node, not how the runner was launched.

# A learner node that stores each batch (a line in a log file) before acknowledging it, and on start
# resumes from the positions its log implies, as a learner restoring a replay checkpoint would.
LEARNER = r"""
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)
signal.signal(signal.SIGINT, signal.default_int_handler)
from serl_gs.transport import LearnerTransportConfig, StreamPosition, TransitionServer
port, log_path = int(sys.argv[1]), sys.argv[2]
resume = {}
try:
    with open(log_path) as f:
        for line in f:
            actor, session, seq, step = line.split()
            resume[(actor, int(session))] = int(seq) + 1
except FileNotFoundError:
    pass
cfg = LearnerTransportConfig(transitions_port=port, params_port=0, params_snapshot_port=0,
                             poll_interval_s=0.01, credits_per_actor=4)
positions = [StreamPosition(a, s, q) for (a, s), q in resume.items()]
with TransitionServer(cfg, resume_positions=positions) as server, open(log_path, "a") as log:
    print(server.port, flush=True)
    while True:
        batch = server.get(timeout=0.5, ack=False)
        if batch is None:
            continue
        h = batch.header
        log.write(f"{h.actor_id} {h.session} {h.seq} {int(batch.arrays['step'][0])}\n")
        log.flush()
        server.ack(h)
"""


def spawn(script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()))
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        proc.kill()
        raise AssertionError(f"node did not start: {proc.stderr.read()[-2000:]}")
    return box[0].strip()


def exit_within(proc: subprocess.Popen, seconds: float) -> int:
    """The node's exit code once it exits; if it is still running `seconds` later, its threads' stacks (the
    scripts register faulthandler on SIGUSR1) go into the failure, so a hang says where it hangs."""
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:
            proc.wait(timeout=2.0)  # the dump is written at once; the node may also finish meanwhile
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"node {proc.args[-3:]} still running {seconds} s later:\n{stderr[-4000:]}") from None


def learner_config(**changes) -> LearnerTransportConfig:
    base = {"transitions_port": 0, "params_port": 0, "params_snapshot_port": 0, "poll_interval_s": 0.01}
    base.update(changes)
    return LearnerTransportConfig(**base)


@pytest.mark.slow
def test_kill_9_of_an_actor_leaves_the_learner_and_the_other_actors_unaffected():
    steady = 200
    with TransitionServer(learner_config(credits_per_actor=4)) as server:
        nodes = {name: spawn(ACTOR, server.port, name, steady) for name in ("steady-0", "steady-1")}
        nodes["victim"] = spawn(ACTOR, server.port, "victim", -1)
        try:
            for proc in nodes.values():
                assert first_line(proc) == "ready"
            got: dict[str, list] = {name: [] for name in nodes}
            killed = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                killed and all(len(got[n]) == steady for n in ("steady-0", "steady-1"))
            ):
                batch = server.get(timeout=0.2)
                if batch is not None:
                    got[batch.header.actor_id].append((batch.header.seq, int(batch.arrays["step"][0])))
                if not killed and len(got["victim"]) >= 30:
                    os.kill(nodes["victim"].pid, signal.SIGKILL)  # mid-stream, no goodbye
                    killed = True
            assert killed
            for name in ("steady-0", "steady-1"):
                assert got[name] == [(s, s) for s in range(steady)], name
                # A finished actor exits by itself (daemon thread), after delivering everything.
                assert exit_within(nodes[name], 10) == 0
            victim = got["victim"]
            assert victim == [(s, s) for s in range(len(victim))]  # a clean prefix: no gap, no duplicate
            assert server.get(timeout=0.5) is None
            stats = server.stats()
            assert stats["rejected"]["internal_error"] == 0 and stats["duplicates_dropped"] == 0
        finally:
            for proc in nodes.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdout.close()
                proc.stderr.close()


@pytest.mark.slow
def test_kill_9_of_the_learner_then_restart_loses_and_duplicates_nothing(tmp_path):
    per_actor = 300
    log_path = tmp_path / "stored.log"
    first = spawn(LEARNER, 0, log_path)
    learners = [first]
    clients: list[TransitionClient] = []
    try:
        port = int(first_line(first))
        for i in range(2):
            cfg = ActorTransportConfig(
                actor_id=f"actor-{i}",
                transitions_port=port,
                poll_interval_s=0.01,
                reconnect_s=0.02,
                reconnect_max_s=0.2,
                ack_timeout_s=1.0,
            )
            clients.append(TransitionClient(cfg))

        def run(client: TransitionClient) -> None:
            for step in range(per_actor):
                client.send({"env_index": np.arange(2, dtype=np.int32), "step": np.full(2, step, np.int64)}, 0)
                time.sleep(0.002)

        senders = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in senders:
            t.start()

        def stored() -> list[str]:
            return log_path.read_text().splitlines() if log_path.exists() else []

        deadline = time.monotonic() + 30
        while len(stored()) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)  # mid-stream: batches in flight, taken, unacked...
        first.wait()
        second = spawn(LEARNER, port, log_path)
        learners.append(second)
        assert int(first_line(second)) == port
        for t in senders:
            t.join(timeout=60)
        for client in clients:
            assert client.flush(timeout=30), client.stats()
        lines = [line.split() for line in stored()]
        for client in clients:
            mine = [(int(seq), int(step)) for actor, session, seq, step in lines if actor == client.actor_id]
            assert mine == [(s, s) for s in range(per_actor)], client.actor_id
            assert client.stats()["learner_restarts"] == 1
        # The restart really happened mid-stream: unconfirmed batches went to the new learner again.
        assert sum(client.stats()["resent_batches"] for client in clients) > 0
    finally:
        for client in clients:
            client.close(timeout=0)
        for proc in learners:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


@pytest.mark.slow
def test_ctrl_c_stops_both_nodes_promptly(tmp_path):
    learner = spawn(LEARNER, 0, tmp_path / "log")
    port = int(first_line(learner))
    actor = spawn(ACTOR, port, "a0", -1)
    idle_actor = spawn(ACTOR, 1, "nobody-listens", -1)  # blocks in send(): no learner, no credits
    try:
        assert first_line(actor) == "ready" and first_line(idle_actor) == "ready"
        time.sleep(1.0)
        for proc in (learner, actor, idle_actor):
            proc.send_signal(signal.SIGINT)
            # By design an actor's Ctrl-C flushes for up to linger_s (1 s) and its sockets linger up to 1 s more
            # (measured: learner 0.03 s, actor 2.07 s, idle actor 1.07 s on a quiet machine); 10 s leaves room for
            # a busy CI machine, and a hang still fails with its stacks.
            exit_within(proc, 10)
            assert "KeyboardInterrupt" in proc.stderr.read()
    finally:
        for proc in (learner, actor, idle_actor):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
