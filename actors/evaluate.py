"""Evaluates a checkpoint with the deterministic policy: success rate, return statistics, JSON and video.

./run_eval.sh --checkpoint runs/pick --num_envs 8 --episodes 32
./run_eval.sh --checkpoint runs/pick --verbosity=-1     # also the libraries' warnings (orbax); 0: their info
"""

from __future__ import annotations

from serl_gs.nodes.evaluation import EvalConfig, evaluate


def parse_flags(argv: list[str]) -> dict:
    """The parsed roots: "eval" (its EvalConfig; --checkpoint is required) and "render"."""
    from serl_gs.nodes.cli import RenderOptions, configure_logging, parse_node_flags
    from serl_gs.nodes.flags import Layout

    roots = {"eval": EvalConfig, "render": RenderOptions()}
    parsed = parse_node_flags(argv, roots, Layout(), prog="run_eval.sh", description=__doc__)
    configure_logging("eval", parsed["node"].verbosity)
    given = parsed["eval"]
    # Derived here only: at most one recorded episode per env.
    parsed["eval"] = EvalConfig(**{**given, "video_episodes": min(given["video_episodes"], given["num_envs"])})
    return parsed


def main(argv: list[str]) -> None:
    from serl_gs.gpu_paths import check_gpu_paths
    from serl_gs.nodes.cli import set_render_threads

    parsed = parse_flags(argv)
    config = parsed["eval"]
    check_gpu_paths(config.physics, config.render_backend, renders=True)  # pixels or a video: it renders
    set_render_threads(parsed["render"].render_threads)  # the video renders even for state policies
    s = evaluate(config)
    rate = f"success {s['success_rate']:.1%} (±{s['success_ci95']:.1%}), " if "success_rate" in s else ""
    print(
        f"[eval] step {s['step']}: {s['episodes']} episodes, {rate}return {s['return_mean']:.2f} "
        f"± {s['return_std']:.2f} (95% CI ±{s['return_ci95']:.2f})",
        flush=True,
    )
    print(f"[eval] summary: {s['summary_json']}" + (f"  video: {s['video']}" if "video" in s else ""), flush=True)


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main)
