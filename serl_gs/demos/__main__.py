"""Record demonstrations into a robomimic-layout HDF5 file (serl_gs.demos.dataset), rendered as the policy sees them.

    python -m serl_gs.demos record --env serl_gs/PandaPickCube-v0 --obs_mode pixels --image_size 32 \
        --source scripted --successes 20 --out demos/pick_px32.hdf5
    python -m serl_gs.demos record --source keyboard --obs_mode pixels --out demos/mine.hdf5   # a window opens
    python -m serl_gs.demos info demos/pick_px32.hdf5

The env flags (--env, --obs_mode, --image_size, --cameras, --frame_stack, --action_repeat, --episode_length,
--scene) must be the learner's: the learner refuses a file recorded for another task, naming the difference.
Keyboard: arrows move x / y, W / S move z, space toggles the gripper, Esc stops (what was kept is written).
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serl_gs.demos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record demonstrations")
    rec.add_argument("--env", default="serl_gs/PandaPickCube-v0")
    rec.add_argument("--obs_mode", default="state", choices=["state", "pixels"])
    rec.add_argument("--image_size", type=int, default=64)
    rec.add_argument("--cameras", default="", help="comma-separated camera names; empty = all")
    rec.add_argument("--episode_length", type=int, default=0, help="0 = the task's default")
    rec.add_argument("--action_repeat", type=int, default=0, help="0 = the task's default")
    rec.add_argument("--frame_stack", type=int, default=1)
    rec.add_argument("--scene", default="")
    rec.add_argument("--render_backend", default="auto")
    rec.add_argument("--physics", default="auto")
    rec.add_argument("--source", default="scripted", choices=["scripted", "keyboard"])
    rec.add_argument("--successes", type=int, default=20, help="episodes to keep")
    rec.add_argument("--num_envs", type=int, default=8, help="envs stepped together (keyboard: 1)")
    rec.add_argument("--keep_failures", action="store_true", help="keep unsuccessful episodes too")
    rec.add_argument("--max_episodes", type=int, default=0, help="give up after this many (0 = 10 x successes)")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--out", required=True, help="the HDF5 file to write")
    info = sub.add_parser("info", help="describe a demo file")
    info.add_argument("path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            from serl_gs.demos.dataset import describe

            d = describe(args.path)
            print(f"{d.path}: {d.episodes} episodes, {d.transitions} transitions; task {d.task}; "
                  f"observations {d.obs}; actions [{d.action_dim}]")  # fmt: skip
            return 0
        return _record(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def _record(args) -> int:
    from serl_gs.demos.recorder import RecordConfig, record
    from serl_gs.demos.sources import KeyboardSource, ScriptedSource
    from serl_gs.logs import configure
    from serl_gs.nodes.env_spec import EnvSpec

    configure("record")  # progress lines as "[record] kept 3/20 episodes ..." (serl_gs.logs)
    env = EnvSpec(
        env=args.env,
        obs_mode=args.obs_mode,
        image_size=args.image_size,
        cameras=tuple(c for c in args.cameras.split(",") if c),
        render_backend=args.render_backend,
        physics=args.physics,
        episode_length=args.episode_length or None,
        scene=args.scene or None,
        action_repeat=args.action_repeat or None,
        frame_stack=args.frame_stack,
    )
    num_envs = 1 if args.source == "keyboard" else args.num_envs
    config = RecordConfig(env=env, out=args.out, successes=args.successes, num_envs=num_envs,
                          keep_failures=args.keep_failures, max_episodes=args.max_episodes, seed=args.seed)  # fmt: skip
    if args.source == "scripted":
        from serl_gs.demos.experts import expert_for

        source = ScriptedSource(expert_for(args.env), num_envs)
    else:
        _, action_dim = env.observation_spec()
        source = KeyboardSource(action_dim, title=f"serl_gs demo: {args.env}")
    result = record(config, source)
    return 0 if result.kept >= args.successes else 1


if __name__ == "__main__":
    sys.exit(main())
