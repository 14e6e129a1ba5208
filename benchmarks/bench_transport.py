"""Transport throughput over loopback: our TransitionServer/TransitionClient against, in the same run,
(a) raw ZeroMQ PUSH/PULL of the same frames (`raw_zmq`, the ceiling of this machine) and
(b) an agentlace-shaped baseline (`pickle_reqrep`): REQ/REP, each batch a list of per-transition dicts,
    lz4.frame(pickle(...)) both ways, preceded by a "last update id" round trip as agentlace's
    TrainerClient.update() does. Without the lz4 package it pickles without compressing, which is
    faster than agentlace, so our ratio against it is then a lower bound (the JSON line says so).

    python -m benchmarks.bench_transport --quick     # < 1 min on a 2-core CPU
    python -m benchmarks.bench_transport             # longer windows, batches of 8/32/128

A transition: state 7 f32, action 4 f32, reward f32, done bool, env_index i32 and one 128x128x3 uint8
frame (random, so incompressible). Actors are separate processes (started once, reused by every run);
the learner side runs in this process and takes every batch the way a learner loop would. Rates count
what the learner received inside a fixed window after a warm-up. Also reported: the cost of CURVE auth.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from benchmarks._report import emit, log

FRAME = (128, 128, 3)
WINDOW = 8  # batches in flight per actor: our credits, and the raw baseline's high-water marks


def make_batch(batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "env_index": np.arange(batch_size, dtype=np.int32),
        "obs/state": rng.standard_normal((batch_size, 7)).astype(np.float32),
        "obs/pixels/front": rng.integers(0, 256, (batch_size, *FRAME), dtype=np.uint8),
        "action": rng.standard_normal((batch_size, 4)).astype(np.float32),
        "reward": rng.standard_normal(batch_size).astype(np.float32),
        "done": np.zeros(batch_size, bool),
    }


def _codec() -> tuple[str, Any, Any]:
    """agentlace's make_compression_method('lz4'); plain pickle when lz4 is not installed."""
    try:
        import lz4.frame

        return (
            "lz4",
            lambda obj: lz4.frame.compress(pickle.dumps(obj)),
            lambda b: pickle.loads(lz4.frame.decompress(b)),
        )
    except ImportError:
        return "none (lz4 not installed)", pickle.dumps, pickle.loads


# --------------------------------------------------------------------------------------------------
# Actor side: runs in worker processes.


def _send_ours(port: int, batch: dict, stop_at: float, auth_file: str | None, index: int) -> None:
    from serl_gs.transport import ActorTransportConfig, AuthConfig, TransitionClient

    cfg = ActorTransportConfig(
        actor_id=f"bench-{index}",
        transitions_port=port,
        auth=AuthConfig(secret_file=auth_file),
        poll_interval_s=0.01,
    )
    with TransitionClient(cfg) as client:
        while time.time() < stop_at:
            client.send(batch, param_version=0)
        client.flush(timeout=60)


def _send_raw(port: int, batch: dict, stop_at: float) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.sndhwm = WINDOW
    sock.linger = 60_000
    sock.connect(f"tcp://127.0.0.1:{port}")
    frames = [b"header", *batch.values()]
    while time.time() < stop_at:
        sock.send_multipart(frames, copy=False)
    sock.close()
    ctx.term()


def _send_pickle(port: int, batch: dict, stop_at: float) -> None:
    _, compress, decompress = _codec()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{port}")
    n = len(batch["env_index"])
    transitions = [{name: value[i] for name, value in batch.items()} for i in range(n)]
    last_id = 0
    while time.time() < stop_at:
        sock.send(compress({"type": "get_last_update_id", "payload": {"store_name": "actor_env"}}))
        decompress(sock.recv())
        last_id += n
        payload = {"data": transitions, "last_id": last_id}
        sock.send(compress({"type": "datastore", "store_name": "actor_env", "payload": payload}))
        decompress(sock.recv())
    sock.close()
    ctx.term()


def _worker(conn, index: int) -> None:
    batches: dict[int, dict] = {}
    while True:
        job = conn.recv()
        if job is None:
            return
        method, port, batch_size, start_at, stop_at, auth_file = job
        batch = batches.setdefault(batch_size, make_batch(batch_size, seed=index))
        time.sleep(max(0.0, start_at - time.time()))
        if method == "ours":
            _send_ours(port, batch, stop_at, auth_file, index)
        elif method == "raw_zmq":
            _send_raw(port, batch, stop_at)
        else:
            _send_pickle(port, batch, stop_at)
        conn.send("done")


# --------------------------------------------------------------------------------------------------
# Learner side: this process.


class _Window:
    """Counts what arrives between `start` and `stop` (wall clock, shared with the workers)."""

    def __init__(self, start: float, stop: float) -> None:
        self.start, self.stop = start, stop
        self.transitions = 0
        self.bytes = 0

    def add(self, transitions: int, nbytes: int) -> None:
        if self.start <= time.time() <= self.stop:
            self.transitions += transitions
            self.bytes += nbytes


def _run(
    method: str, workers: list, batch_size: int, args, auth_file: str | None = None
) -> tuple[float, float]:
    """(transitions/s, MB/s) received by the learner side with len(workers) actors."""
    start_at = time.time() + args.startup_s
    window = _Window(start_at + args.warmup_s, start_at + args.warmup_s + args.measure_s)
    stop_at = window.stop + 0.1
    pending = set(range(len(workers)))

    def poll_workers() -> None:
        for i in list(pending):
            if workers[i].poll():
                workers[i].recv()
                pending.discard(i)

    if method == "ours":
        from serl_gs.transport import AuthConfig, LearnerTransportConfig, TransitionServer

        cfg = LearnerTransportConfig(
            transitions_port=0,
            params_port=0,
            params_snapshot_port=0,
            credits_per_actor=WINDOW,
            auth=AuthConfig(secret_file=auth_file),
        )
        with TransitionServer(cfg) as server:
            for conn in workers:
                conn.send((method, server.port, batch_size, start_at, stop_at, auth_file))
            while pending:
                batch = server.get(timeout=0.05)
                if batch is not None:
                    window.add(batch.header.num_records, batch.header.nbytes)
                poll_workers()
            stats = server.stats()
            if stats["rejected_total"] or stats["duplicates_dropped"]:
                raise RuntimeError(f"unexpected rejects/duplicates in the benchmark: {stats}")
    else:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL if method == "raw_zmq" else zmq.REP)
        sock.rcvhwm = WINDOW
        sock.linger = 0
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        for conn in workers:
            conn.send((method, port, batch_size, start_at, stop_at, None))
        _, compress, decompress = _codec()
        while pending:
            if sock.poll(50):
                if method == "raw_zmq":
                    frames = sock.recv_multipart(copy=False)
                    window.add(batch_size, sum(len(f) for f in frames[1:]))
                else:
                    request = decompress(sock.recv())
                    if request["type"] == "datastore":
                        data = request["payload"]["data"]
                        window.add(len(data), sum(v.nbytes for t in data for v in t.values()))
                        sock.send(compress({"success": True}))
                    else:
                        sock.send(compress({"success": True, "payload": 0}))
            poll_workers()
        sock.close()
        ctx.term()
    return window.transitions / args.measure_s, window.bytes / args.measure_s / 1e6


def _device() -> str:
    # The transport runs on CPUs only, even on a GPU node: name the CPU, not the GPU.
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, batches of 32 (< 1 min)")
    parser.add_argument("--actors", default="1,4", help="comma-separated actor counts")
    parser.add_argument(
        "--batch_sizes", default=None, help="transitions per message (default 32 quick, 8,32,128)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved repetitions (median reported)")
    args = parser.parse_args()
    args.startup_s = 0.4
    args.warmup_s = 0.3 if args.quick else 1.0
    args.measure_s = 0.8 if args.quick else 4.0
    rounds = args.rounds or (3 if args.quick else 5)
    actor_counts = [int(a) for a in args.actors.split(",")]
    batch_sizes = [int(b) for b in (args.batch_sizes or ("32" if args.quick else "8,32,128")).split(",")]
    compression = _codec()[0]
    device = _device()

    context = mp.get_context("spawn")
    pipes = [context.Pipe() for _ in range(max(actor_counts))]
    procs = [
        context.Process(target=_worker, args=(child, i), daemon=True) for i, (_, child) in enumerate(pipes)
    ]
    for proc in procs:
        proc.start()
    conns = [parent for parent, _ in pipes]
    with tempfile.TemporaryDirectory() as tmp:
        from serl_gs.transport import write_secret_file

        secret = str(Path(tmp) / "bench.secret")
        write_secret_file(secret)
        try:
            for batch_size in batch_sizes:
                for n in actor_counts:
                    # The auth cost is measured with one actor in --quick, to stay under a minute.
                    methods = ["ours", "raw_zmq", "pickle_reqrep"]
                    if not args.quick or n == actor_counts[0]:
                        methods.append("ours_auth")
                    samples: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
                    for _ in range(rounds):  # interleaved, so load from other processes hits all alike
                        for m in methods:
                            method, auth = ("ours", secret) if m == "ours_auth" else (m, None)
                            samples[m].append(_run(method, conns[:n], batch_size, args, auth_file=auth))
                    rate = {m: float(np.median([v[0] for v in vs])) for m, vs in samples.items()}
                    mbps = {m: float(np.median([v[1] for v in vs])) for m, vs in samples.items()}
                    log(f"actors={n} batch={batch_size}: " + ", ".join(f"{m} {samples[m]}" for m in methods))
                    config = {
                        "actors": n,
                        "batch": batch_size,
                        "frame": list(FRAME),
                        "auth": False,
                        "rounds": rounds,
                    }
                    common = {"quick": args.quick, "device": device}
                    emit(
                        "transport",
                        "transitions_per_s",
                        rate["ours"],
                        "1/s",
                        config=config,
                        **common,
                        baseline="raw_zmq",
                        baseline_value=rate["raw_zmq"],
                    )
                    emit(
                        "transport",
                        "transitions_per_s",
                        rate["ours"],
                        "1/s",
                        **common,
                        config={**config, "baseline_compression": compression},
                        baseline="pickle_reqrep",
                        baseline_value=rate["pickle_reqrep"],
                    )
                    emit(
                        "transport",
                        "MB_per_s",
                        mbps["ours"],
                        "MB/s",
                        config=config,
                        **common,
                        baseline="raw_zmq",
                        baseline_value=mbps["raw_zmq"],
                    )
                    # The most any transport could reach against the pickle baseline on this machine: raw
                    # ZeroMQ itself. Our ratio to the baseline cannot exceed it (docs/measurements.md, "Transport").
                    emit(
                        "transport",
                        "ceiling_transitions_per_s",
                        rate["raw_zmq"],
                        "1/s",
                        **common,
                        config={**config, "transport": "raw_zmq", "baseline_compression": compression},
                        baseline="pickle_reqrep",
                        baseline_value=rate["pickle_reqrep"],
                    )
                    if "ours_auth" in rate:
                        emit(
                            "transport",
                            "transitions_per_s_with_auth",
                            rate["ours_auth"],
                            "1/s",
                            **common,
                            config={**config, "auth": True},
                            baseline="ours_without_auth",
                            baseline_value=rate["ours"],
                        )
        finally:
            for conn in conns:
                conn.send(None)
            for proc in procs:
                proc.join(timeout=10)


if __name__ == "__main__":
    main()
