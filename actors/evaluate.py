"""Evaluates a checkpoint with the deterministic policy: success rate, return statistics, JSON and video.

./run_eval.sh --checkpoint runs/pick --num_envs 8 --episodes 32
./run_eval.sh --checkpoint runs/pick --verbosity=-1     # also the libraries' warnings (orbax); 0: their info
"""

from __future__ import annotations

from serl_gs.nodes.evaluation import EvalConfig, evaluate


def main(argv: list[str]) -> None:
    from absl import flags

    from serl_gs.gpu_paths import check_gpu_paths
    from serl_gs.nodes.cli import set_render_threads

    f = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {argv[1:]}")
    if not f.checkpoint:
        raise ValueError("--checkpoint is required: a run directory or a checkpoint step folder")
    config = EvalConfig(
        checkpoint=f.checkpoint,
        num_envs=f.num_envs,
        episodes=f.episodes,
        seed=f.seed,
        physics=f.physics,
        render_backend=f.render_backend,
        video_episodes=min(f.video_episodes, f.num_envs),
        video_size=f.video_size,
        policy_frames=f.policy_frames,
        out_dir=f.out_dir or None,
        scene=f.scene or None,
        randomize=f.randomize,
        shift=f.shift,
    )
    check_gpu_paths(config.physics, config.render_backend, renders=True)  # pixels or a video: it renders
    set_render_threads(f.render_threads)  # the video renders even for state policies
    s = evaluate(config)
    rate = f"success {s['success_rate']:.1%} (±{s['success_ci95']:.1%}), " if "success_rate" in s else ""
    print(
        f"[eval] step {s['step']}: {s['episodes']} episodes, {rate}return {s['return_mean']:.2f} "
        f"± {s['return_std']:.2f} (95% CI ±{s['return_ci95']:.2f})",
        flush=True,
    )
    print(f"[eval] summary: {s['summary_json']}" + (f"  video: {s['video']}" if "video" in s else ""), flush=True)


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("checkpoint", "", "A run directory (newest checkpoint) or a checkpoint step folder.")
    flags.DEFINE_integer("num_envs", 8, "Envs evaluated in one batch.")
    flags.DEFINE_integer("episodes", 16, "Episodes to evaluate.")
    flags.DEFINE_integer("seed", 12345, "Seed of the eval envs.")
    flags.DEFINE_enum("physics", "auto", ["auto", "mjx", "mujoco"], "Physics path.")
    flags.DEFINE_enum("render_backend", "auto", ["auto", "gsplat", "reference"], "3DGS backend (pixels, video).")
    flags.DEFINE_integer("render_threads", 1, "Torch CPU threads of the reference renderer (0 = torch's default).")
    flags.DEFINE_integer("video_episodes", 2, "Episodes recorded into the video (0 = none).")
    flags.DEFINE_integer("video_size", 128, "Video frame side in pixels.")
    flags.DEFINE_bool("policy_frames", False, "Pixel policies: the video shows the frames the policy saw.")
    flags.DEFINE_string("out_dir", "", "Where summary.json and eval.mp4 go; default <run_dir>/eval/<step>.")
    flags.DEFINE_string("scene", "", "A scene manifest (JSON) of 3DGS captures; empty = the run's own scene.")
    flags.DEFINE_enum("randomize", "none", ["none", "light", "strong"], "Domain randomization of the eval envs.")
    flags.DEFINE_enum("shift", "none", ["none", "camera", "lighting", "background"],
                      "A held-out change of the frames, outside every training range (docs/sim2real.md).")


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main, define_flags)
