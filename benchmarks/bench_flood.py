"""Flood benchmark: the messages per second a training learner absorbs while its updates/s stay within 10 % of
an undisturbed run measured side by side (interleaved, same process, same learner).

    python -m benchmarks.bench_flood --quick      # < 1 min on a 2-core CPU
    python -m benchmarks.bench_flood              # more rates, longer windows

The learner (nodes.Learner: cartpole, state SAC, small networks, a pre-filled replay, the rate limiter wide open
so it updates as fast as it can) steps in this process; a flood process sends, at an offered rate, an even mix
of what the hostile-input suite sends: random bytes, agentlace's lz4(pickle) REQ envelopes, pings with random
sessions, first batches of another task's schema from new sessions (each one a stream the learner must refuse),
and parameter snapshot requests (each answered with the whole policy, up to 100 a second). Absorbed = the
messages the learner handled inside the window (rejected on any port, pings answered, snapshots served).
Each rate is measured `--rounds` times, each flooded window right after an undisturbed one; the criterion is the
median of these paired ratios (on a shared machine, other load moves both windows of a pair alike).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import pickle
import platform
import sys
import tempfile
import time

import numpy as np

from benchmarks._report import emit, log

_WARMUP_S = 0.5  # of each window, before counting (the flood starts with it)
MIX = ("junk_bytes", "agentlace_req", "ping", "wrong_schema_batch", "snapshot_request", "junk_snapshot")


def _flood_worker(conn) -> None:
    """Worker process, started once (its imports stay out of the windows): runs each job it is sent."""
    while (job := conn.recv()) is not None:
        conn.send(_flood(*job))


def _flood(ports: tuple[int, int], rate: float, start_at: float, stop_at: float, mix: tuple[str, ...]) -> int:
    """Sends the mix at `rate` messages/s between the two wall-clock times; returns how many it sent."""
    import zmq

    from serl_gs.transport import wire

    rng = np.random.default_rng(0)
    n = 2  # another task's first batch: PandaPickCube-shaped records (state 10, action 4)
    wrong = {
        "env_index": np.arange(n, dtype=np.int32),
        "obs/state": np.zeros((n, 10), np.float32),
        "action": np.zeros((n, 4), np.float32),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
        "is_first": np.ones(n, bool),
    }
    _, specs, buffers = wire.describe_arrays(wrong, copy=True)
    frames = [b.tobytes() for b in buffers]
    agentlace = b"\x04\x22\x4d\x18" + pickle.dumps({"type": "datastore", "payload": {"data": [0] * 50}})
    request = wire.encode_param_message(wire.make_header("get_params", have_version=-1, have_incarnation=-1))
    ctx = zmq.Context()
    transitions, snapshot = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock, port in zip((transitions, snapshot), ports, strict=True):
        sock.linger = 0
        sock.sndhwm = 100_000
        sock.connect(f"tcp://127.0.0.1:{port}")

    def drain() -> None:  # replies (acks, snapshots) must not pile up in this process
        for sock in (transitions, snapshot):
            while sock.poll(0):
                sock.recv_multipart()

    time.sleep(max(0.0, start_at - time.time()))
    sent, t0 = 0, time.time()
    while time.time() < stop_at:
        kind = mix[sent % len(mix)]
        session = int(rng.integers(1 << 62))
        if kind == "junk_bytes":
            transitions.send(rng.bytes(int(rng.integers(1, 200))))
        elif kind == "agentlace_req":
            transitions.send_multipart([b"", agentlace])
        elif kind == "ping":
            transitions.send(wire.pack_message("ping", actor="flood", session=session, base=0, tx=0))
        elif kind == "wrong_schema_batch":
            header = wire.make_header(
                "batch", actor="flood", session=session, seq=0, base=0, tx=0, index=0, dropped_before=0,
                param_version=-1, n=n, arrays=[s.to_wire() for s in specs],
            )  # fmt: skip
            transitions.send_multipart([wire.pack(header), *frames])
        elif kind == "snapshot_request":
            snapshot.send(request)
        else:
            snapshot.send(rng.bytes(int(rng.integers(1, 64))))
        sent += 1
        if sent % 32 == 0:
            drain()
            ahead = sent / rate - (time.time() - t0)
            if ahead > 0:
                time.sleep(ahead)
    drain()
    transitions.close()
    snapshot.close()
    ctx.term()
    return sent


def _make_learner(run_dir: str):
    from serl_gs.agents.config import AgentConfig
    from serl_gs.data.records import reset_records, step_records
    from serl_gs.data.replay import ReplayConfig
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.nodes.learner import Learner, LearnerConfig
    from serl_gs.nodes.rate_limiter import RateLimiterConfig
    from serl_gs.transport import LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    env = EnvSpec("serl_gs/CartpoleBalance-v0", episode_length=50, physics="mujoco")
    config = LearnerConfig(
        env=env,
        agent=AgentConfig(hidden_dims=(64, 64), critic_ensemble_size=2, batch_size=64, critic_actor_ratio=1),
        replay=ReplayConfig(capacity=20_000),
        rate=RateLimiterConfig(utd=1e6, min_inserts=1, tolerance=1e9, auto=False),  # never waits for data
        transport=LearnerTransportConfig(**port_layout(0), reject_log_interval_s=3600.0),
        run_dir=run_dir,
        publish_every=20,
        checkpoint_every=10**9,
        updates_per_call=1,
        log_every_s=3600.0,
    )
    learner = Learner(config)
    vec = env.make_vec(8, seed=0)
    obs, _ = vec.reset(seed=0)
    learner._store("prefill", 0, reset_records(obs, 1))
    rng = np.random.default_rng(0)
    for _ in range(250):
        action = rng.uniform(-1, 1, (8, 1)).astype(np.float32)
        obs, reward, terminated, truncated, infos = vec.step(action)
        learner._store("prefill", 0, step_records(obs, action, reward, terminated, truncated, infos))
    vec.close()
    return learner


def _absorbed(learner) -> int:
    server, publisher = learner.server.stats(), learner.publisher.stats()
    return (
        server["rejected_total"] + server["pings_unknown"] + publisher["rejected_total"] + publisher["snapshot_replies"]
    )


def _window(learner, seconds: float, flood_rate: float, flooder, mix: tuple[str, ...]) -> tuple[float, float, int]:
    """(updates/s, absorbed messages/s, messages sent) over `seconds` of training, flooded at `flood_rate`."""
    start = time.time() + _WARMUP_S
    stop = start + seconds
    if flood_rate:
        flooder.send(((learner.server.port, learner.publisher.snapshot_port), flood_rate, time.time(), stop, mix))
    while time.time() < start:
        learner.step()
    updates, absorbed = learner.counters["updates"], _absorbed(learner)
    while time.time() < stop:
        learner.step()
    updates, absorbed = learner.counters["updates"] - updates, _absorbed(learner) - absorbed
    sent = 0
    if flood_rate:
        sent = flooder.recv()
        deadline = time.time() + 5  # let the learner take what the flood left in its buffers before the next window
        while time.time() < deadline and _absorbed(learner) < absorbed:
            learner.step()
        end = time.time() + 0.5
        while time.time() < end:
            learner.step()
    return updates / seconds, absorbed / seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rates, short windows (< 1 min)")
    parser.add_argument("--rates", default=None, help="offered flood rates, messages/s (comma-separated)")
    parser.add_argument("--seconds", type=float, default=None, help="measured window per run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved repetitions (median reported)")
    parser.add_argument("--mix", default=",".join(MIX), help=f"message kinds sent in turn, of {', '.join(MIX)}")
    args = parser.parse_args()
    mix = tuple(args.mix.split(","))
    if not mix or any(kind not in MIX for kind in mix):
        raise ValueError(f"--mix takes kinds of {MIX}, got {args.mix!r}")
    default_rates = "1000,4000" if args.quick else "500,1000,2000,4000,8000,16000"
    rates = [float(r) for r in (args.rates or default_rates).split(",")]
    seconds = args.seconds or 2.0
    rounds = args.rounds or (2 if args.quick else 5)
    device = f"cpu ({os.cpu_count()} cores, {platform.machine()})"  # the learner here runs on the CPU
    ctx = mp.get_context("spawn")
    flooder, child = ctx.Pipe()
    worker = ctx.Process(target=_flood_worker, args=(child,), daemon=True)
    worker.start()
    with tempfile.TemporaryDirectory() as run_dir:
        with contextlib.redirect_stdout(sys.stderr):
            learner = _make_learner(run_dir)
        try:
            warm_end = time.time() + 2.0  # compile and warm up before anything is measured
            with contextlib.redirect_stdout(sys.stderr):
                while time.time() < warm_end:
                    learner.step()
            best = None
            for rate in rates:
                base, flooded = [], []
                for _ in range(rounds):
                    with contextlib.redirect_stdout(sys.stderr):  # the learner's own lines: not JSON
                        base.append(_window(learner, seconds, 0.0, flooder, mix))
                        flooded.append(_window(learner, seconds, rate, flooder, mix))
                base_ups = float(np.median([b[0] for b in base]))
                ups = float(np.median([f[0] for f in flooded]))
                # Each flooded window against the undisturbed one just before it: other load on the machine
                # moves both alike, so the median of these pairs is steadier than a ratio of medians.
                paired = float(np.median([f[0] / b[0] for f, b in zip(flooded, base, strict=True)]))
                absorbed = float(np.median([f[1] for f in flooded]))
                offered = float(np.median([f[2] for f in flooded])) / (seconds + _WARMUP_S)
                log(f"rate {rate:.0f}/s: undisturbed {base}, flooded {flooded}")
                config = {
                    "offered_msgs_per_s": round(offered, 1),
                    "paired_ratio_median": round(paired, 4),
                    "mix": list(mix),
                    "seconds": seconds,
                    "rounds": rounds,
                    "learner": "cartpole state SAC 64x64, batch 64, one update per call",
                }
                emit(
                    "flood", "updates_per_s_under_flood", ups, "1/s", config=config, quick=args.quick,
                    baseline="undisturbed", baseline_value=base_ups, device=device,
                )  # fmt: skip
                emit(
                    "flood", "absorbed_msgs_per_s", absorbed, "1/s", config=config, quick=args.quick, device=device
                )
                if paired >= 0.9:
                    best = (absorbed, ups, base_ups, offered, paired)
            if best is not None:
                absorbed, ups, base_ups, offered, paired = best
                emit(
                    "flood", "absorbed_msgs_per_s_within_10pct_of_undisturbed_updates", absorbed, "1/s",
                    config={"offered_msgs_per_s": round(offered, 1), "updates_per_s": round(ups, 2),
                            "paired_ratio_median": round(paired, 4),
                            "undisturbed_updates_per_s": round(base_ups, 2), "rates_tried": rates,
                            "seconds": seconds, "rounds": rounds},
                    quick=args.quick, device=device,
                )  # fmt: skip
            else:
                log("no offered rate kept updates/s within 10 % of the undisturbed run; try lower --rates")
        finally:
            flooder.send(None)
            worker.join(10)
            learner.close()


if __name__ == "__main__":
    main()
