"""What persistence costs the learner: receive-log writes and checkpoints, as a fraction of learner time.

    python -m benchmarks.bench_checkpoint                        # 200k records of 2 x 64² frames (4.9 GB in RAM)
    python -m benchmarks.bench_checkpoint --capacity 50000       # the same at a quarter of the memory
    python -m benchmarks.bench_checkpoint --quick                # 20k records, one round

A replay of `--capacity` records of PandaPickCube's pixel observation (front + wrist 64²x3 uint8, state) is
filled, then each round receives what arrives between two checkpoints at the learner's defaults
(--checkpoint_every 1000 updates at --utd 0.25: 4,000 records, in batches of --batch_records) and checkpoints,
through the learner's own persistence (serl_gs.nodes.resume.ResumableRun: replay, its transport state, the
orbax training state of the default DrQ agent for these observations). Side by side in the same run, on the same
replay and the same records:
  ours   the .rlog receive log (serl_gs.nodes.receive_log) and the incremental replay save;
  today  the receive log as an .npz per batch and the whole replay rewritten at every checkpoint.
Learner time between two checkpoints is checkpoint_every / updates_per_s, where updates_per_s is the pixel
learner's rate on a GPU, read from a committed result (--learner_rate_file; a CPU's pixel learner is ~1000x
slower, which would make any cost look small). Lines: seconds per checkpoint interval of receive-log writes and of
the save, ours beside today's; their sum as a fraction of learner time (today all of it ran on the update loop's
thread; ours runs on the ingest and checkpoint threads, see docs/scale.md); and the disk's plain write bandwidth
measured in the same run, which all of these follow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import emit, log

RATE_FILE = "benchmarks/results/gpu-check-h200-2026-12-04/learner.jsonl"
STATE_DIM, ACTION_DIM, IMAGE, CAMERAS = 18, 7, 64, ("front", "wrist")


def learner_rate(path: str, agent: str) -> float:
    """updates_per_s of `agent` in a bench_learner result file."""
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if row.get("metric") == "updates_per_s" and row.get("config", {}).get("agent") == agent:
            return float(row["value"])
    raise ValueError(f"no updates_per_s line for agent {agent!r} in {path}")


def npz_log_append(directory: Path, index: int, actor: str, session: int, seq: int, records: dict) -> None:
    """The receive log's entry as it was written before .rlog (np.savez to a temporary name, then renamed)."""
    path = directory / f"{index:012d}.npz"
    tmp = path.with_suffix(".tmp")
    header = {"__actor_id": np.asarray(actor), "__session": np.asarray(session), "__seq": np.asarray(seq)}
    with open(tmp, "wb") as f:
        np.savez(f, **header, **records)
    os.replace(tmp, path)


def written_bytes() -> int:
    """Bytes this process has handed to write() so far (/proc/self/io's wchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise OSError("/proc/self/io has no wchar line")


def disk_write_bandwidth(where: Path, mb: int = 256) -> float:
    """MB/s of one plain write of `mb` MB (page cache included, as the saves above), then removed."""
    data = np.random.default_rng(1).integers(0, 256, mb << 20, dtype=np.uint8)
    path = where / "serl_gs_disk_probe.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        f.write(data.data)
    seconds = time.perf_counter() - start
    path.unlink()
    return mb / seconds


def make_batch(n: int, env0: int, step: int, template: np.ndarray) -> dict[str, np.ndarray]:
    """n records of distinct envs; frames from a random template, stamped with the step so no two are equal."""
    frames = template[:n].copy()
    frames[:, 0, 0, 0] = step % 251
    return {
        "env_index": np.arange(env0, env0 + n, dtype=np.int32),
        **{f"obs/pixels/{camera}": frames for camera in CAMERAS},
        "obs/state": np.full((n, STATE_DIM), step, np.float32),
        "action": np.zeros((n, ACTION_DIM), np.float32),
        "reward": np.zeros((n,), np.float32),
        "terminated": np.zeros((n,), bool),
        "truncated": np.zeros((n,), bool),
        "is_first": np.full((n,), step == 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--capacity", type=int, default=None, help="replay records (default 200000; quick 20000)")
    parser.add_argument("--rounds", type=int, default=None, help="checkpoint intervals measured (default 3)")
    parser.add_argument("--checkpoint_every", type=int, default=1000, help="updates (the learner's default)")
    parser.add_argument("--utd", type=float, default=0.25, help="updates per transition (the learner's default)")
    parser.add_argument("--batch_records", type=int, default=1024, help="records per received batch")
    parser.add_argument("--learner_rate_file", default=RATE_FILE)
    parser.add_argument("--learner_agent", default="drq_64_1cam", help="its line in --learner_rate_file")
    parser.add_argument("--storage", default="host", choices=["host", "device", "auto"],
                        help="where the replay keeps frames (a GPU learner: device)")  # fmt: skip
    parser.add_argument("--workdir", default=None, help="where the run directories go (default: a temp dir)")
    args = parser.parse_args()
    capacity = args.capacity or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    updates_per_s = learner_rate(args.learner_rate_file, args.learner_agent)
    interval_records = int(args.checkpoint_every / args.utd)
    learner_s = args.checkpoint_every / updates_per_s

    import jax

    from serl_gs.agents.config import AgentConfig
    from serl_gs.agents.learning import init_training_state
    from serl_gs.agents.networks import make_networks
    from serl_gs.data.records import RecordSpec
    from serl_gs.data.replay import ReplayBuffer, ReplayConfig
    from serl_gs.nodes.resume import ResumableRun
    from serl_gs.transport.streams import StreamPosition

    obs = {f"pixels/{c}": jax.ShapeDtypeStruct((IMAGE, IMAGE, 3), np.uint8) for c in CAMERAS}
    obs["state"] = jax.ShapeDtypeStruct((STATE_DIM,), np.float32)
    state = init_training_state(make_networks(AgentConfig(), obs, ACTION_DIM), jax.random.PRNGKey(0))
    spec = RecordSpec(obs=tuple((name, tuple(s.shape), np.dtype(s.dtype).name) for name, s in sorted(obs.items())),
                      action_dim=ACTION_DIM)  # fmt: skip
    replay = ReplayBuffer(spec, ReplayConfig(capacity=capacity, storage=args.storage), log=log)
    rng = np.random.default_rng(0)
    template = rng.integers(0, 256, (args.batch_records, IMAGE, IMAGE, 3), dtype=np.uint8)
    num_envs = args.batch_records
    step = 0
    log(f"filling {capacity} records ({capacity * IMAGE * IMAGE * 3 * len(CAMERAS) / 1e9:.1f} GB of frames)")
    while replay.total_inserted < capacity:
        replay.insert("a0:1", make_batch(num_envs, 0, step, template))
        step += 1

    root = Path(args.workdir or tempfile.mkdtemp(prefix="serl_gs_ckpt_"))
    runs = {name: ResumableRun(root / name, keep=3, save_replay=True, meta={}) for name in ("ours", "today")}
    counters = {"updates": 0, "records": 0, "transitions": 0}
    positions = [StreamPosition("a0", 1, 0)]
    config = {"capacity": capacity, "cameras": len(CAMERAS), "image": [IMAGE, IMAGE, 3], "batch_records": num_envs,
              "interval_records": interval_records, "checkpoint_every": args.checkpoint_every, "utd": args.utd,
              "learner_updates_per_s": updates_per_s, "learner_rate_from": f"{args.learner_rate_file} "
              f"({args.learner_agent})", "replay_storage": replay.storage_kind}  # fmt: skip
    seq = 0

    replay_save, replay_s = replay.save, [0.0]

    def timed_replay_save(*a, **k) -> None:  # the replay's share of a checkpoint (the rest: orbax state, JSON)
        start = time.perf_counter()
        replay_save(*a, **k)
        replay_s[0] += time.perf_counter() - start

    replay.save = timed_replay_save

    def save(name: str) -> tuple[float, int]:
        """(seconds, bytes written) of one checkpoint, started with nothing else waiting to be written out."""
        os.sync()  # the other variant's writes must not slow this one down
        start, before = time.perf_counter(), written_bytes()
        counters["updates"] += 1  # a new step each time: orbax writes the state, as at a real checkpoint
        runs[name].save(state, counters, 0, replay, positions)
        return time.perf_counter() - start, written_bytes() - before

    try:
        # Each run's first save is whole (nothing on disk yet), as a learner's first checkpoint is.
        saved = replay._saved_to
        first_today, _ = save("today")
        replay._saved_to = saved
        first_ours, _ = save("ours")
        log(f"first saves: today {first_today:.1f} s, ours {first_ours:.1f} s")
        keys = ("ours_log", "ours_save", "today_log", "today_save", "ours_replay", "today_replay")
        totals = {k: 0.0 for k in keys}
        written = {k: 0 for k in keys}
        npz_dir, npz_index = root / "today" / "receive_log", 0
        for r in range(rounds):
            t, w = {k: 0.0 for k in totals}, {k: 0 for k in totals}
            received = 0
            os.sync()
            while received < interval_records:
                batch = make_batch(num_envs, 0, step, template)
                step += 1
                replay.insert("a0:1", batch)
                start, before = time.perf_counter(), written_bytes()
                runs["ours"].log_received("a0", 1, seq, batch)
                t["ours_log"] += time.perf_counter() - start
                w["ours_log"] += written_bytes() - before
                start, before = time.perf_counter(), written_bytes()
                npz_log_append(npz_dir, npz_index, "a0", 1, seq, batch)
                t["today_log"] += time.perf_counter() - start
                w["today_log"] += written_bytes() - before
                npz_index, seq, received = npz_index + 1, seq + 1, received + num_envs
            replay_s[0] = 0.0
            t["ours_save"], w["ours_save"] = save("ours")
            t["ours_replay"], replay_s[0] = replay_s[0], 0.0
            saved = replay._saved_to  # today's save is whole: as if nothing of this replay were on disk
            replay._saved_to = None
            t["today_save"], w["today_save"] = save("today")
            t["today_replay"] = replay_s[0]
            replay._saved_to = saved
            figures = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
            log(f"round {r}: {figures}; learner time {learner_s:.1f} s")
            for k in totals:
                totals[k] += t[k] / rounds
                written[k] += w[k] // rounds
    finally:
        for run in runs.values():
            run.close()
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    disk_mb_per_s = disk_write_bandwidth(root if args.workdir else Path(tempfile.gettempdir()))
    q = args.quick
    emit("checkpoint", "receive_log_s_per_interval_lower_is_better", totals["ours_log"], "s", config=config, quick=q,
         baseline="npz_per_batch", baseline_value=totals["today_log"])  # fmt: skip
    emit("checkpoint", "save_s_per_checkpoint_lower_is_better", totals["ours_save"], "s", config=config, quick=q,
         baseline="whole_replay", baseline_value=totals["today_save"])  # fmt: skip
    emit("checkpoint", "replay_save_s_per_checkpoint_lower_is_better", totals["ours_replay"], "s", config=config,
         quick=q, baseline="whole_replay", baseline_value=totals["today_replay"])  # fmt: skip
    ours, today = totals["ours_log"] + totals["ours_save"], totals["today_log"] + totals["today_save"]
    emit("checkpoint", "persistence_fraction_of_learner_time_lower_is_better", ours / learner_s, "fraction",
         config=config, quick=q, baseline="npz_log_and_whole_replay", baseline_value=today / learner_s)  # fmt: skip
    emit("checkpoint", "disk_write_mb_per_s", disk_mb_per_s, "MB/s", config=config, quick=q)
    ours_mb = (written["ours_log"] + written["ours_save"]) / 1e6
    today_mb = (written["today_log"] + written["today_save"]) / 1e6
    emit("checkpoint", "mb_written_per_interval_lower_is_better", ours_mb, "MB", config=config, quick=q,
         baseline="npz_log_and_whole_replay", baseline_value=today_mb)  # fmt: skip
    # The disk bandwidth at which all of it would be 5 % of learner time (from the bytes measured above).
    emit("checkpoint", "disk_mb_per_s_for_5_percent_lower_is_better", ours_mb / (0.05 * learner_s), "MB/s",
         config=config, quick=q, baseline="npz_log_and_whole_replay", baseline_value=today_mb / (0.05 * learner_s))


if __name__ == "__main__":
    main()
