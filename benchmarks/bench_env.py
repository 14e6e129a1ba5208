"""Env throughput: our batched vector env (MuJoCo C, MJX-JAX, MJX-Warp) against the seed project's design,
`gymnasium.vector.SyncVectorEnv` over single CPU-MuJoCo envs stepped one at a time, in the same run.

    python -m benchmarks.bench_env --quick            # a few minutes on a 2-core CPU (compiles MJX programs)
    python -m benchmarks.bench_env --cases PandaPickCube-v0:mjx:jax,PandaPickCube-v0:mjx:warp \
        --num_envs 1024,4096,16384 --baseline_max_envs 64   # on a GPU

A case is `task:physics[:mjx_impl]` (physics `mujoco` | `mjx`; mjx_impl `jax` | `warp`, default: the vector
env's `auto`). One JSON line per (task, physics, impl, num_envs): env steps/s (all envs together), with the
baseline at the same num_envs (up to --baseline_max_envs; beyond it the baseline's rate at its largest measured
size is used, which only flatters the baseline since it does not scale with num_envs) and their ratio;
--baseline_max_envs 0 runs no baseline (the lines then carry no baseline or ratio).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import envs  # noqa: F401  (registers the tasks)
from benchmarks._report import emit, log
from serl_gs.env_options import resolve_mjx_impl

BASELINE = "sync_vector_env_cpu_mujoco"


def _rate(vec, steps: int, actions) -> float:
    """Env steps/s of `vec` over `steps` steps, after two warm-up steps (compilation)."""
    vec.reset(seed=0)
    for i in range(2):
        vec.step(actions[i % len(actions)])
    start = time.perf_counter()
    for i in range(steps):
        obs, *_ = vec.step(actions[i % len(actions)])
    jax.block_until_ready(obs)
    return steps * vec.num_envs / (time.perf_counter() - start)


def ours(env_id: str, physics: str, impl: str, num_envs: int, steps: int, **env_kwargs) -> float:
    vec = gym.make_vec(env_id, num_envs=num_envs, physics=physics, mjx_impl=impl, **env_kwargs)
    shape = (8, *vec.action_space.shape)
    actions = list(jax.random.uniform(jax.random.PRNGKey(0), shape, jnp.float32, -1.0, 1.0))
    try:
        return _rate(vec, steps, actions)
    finally:
        vec.close()


def baseline(env_id: str, num_envs: int, steps: int, **env_kwargs) -> float:
    fns = [
        lambda: gym.make(env_id, physics="mujoco", disable_env_checker=True, **env_kwargs) for _ in range(num_envs)
    ]
    vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, vec.action_space.shape).astype(np.float32) for _ in range(8)]
    try:
        return _rate(vec, steps, actions)
    finally:
        vec.close()


def parse_cases(text: str) -> dict[str, list[tuple[str, str]]]:
    """"task:physics[:impl],..." -> {task: [(physics, impl), ...]}; bad cases raise ValueError naming them."""
    cases: dict[str, list[tuple[str, str]]] = {}
    for case in text.split(","):
        parts = case.split(":")
        if len(parts) not in (2, 3) or parts[1] not in ("mujoco", "mjx") or parts[2:] not in ([], ["jax"], ["warp"]):
            raise ValueError(f"bad case {case!r}: want task:mujoco, task:mjx, task:mjx:jax or task:mjx:warp")
        cases.setdefault(parts[0], []).append((parts[1], parts[2] if len(parts) == 3 else "auto"))
    return cases


def baseline_size(num_envs: int, baseline_max_envs: int) -> int | None:
    """How many single envs the baseline runs for a figure at `num_envs`: capped at `baseline_max_envs`; None
    (no baseline) when that is 0."""
    if baseline_max_envs < 0:
        raise ValueError(f"--baseline_max_envs must be >= 0 (0: no baseline), got {baseline_max_envs}")
    return min(num_envs, baseline_max_envs) if baseline_max_envs else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute on 2 CPU cores")
    parser.add_argument(
        "--cases",
        default=None,
        help="comma list of task:physics[:mjx_impl] (default: every task on mujoco and mjx:warp, cartpole on "
        "mjx:jax too, and without --quick the Panda on mjx:jax, whose step takes minutes to compile on a CPU)",
    )
    parser.add_argument("--num_envs", default=None, help="comma list (default quick: 1,16,64; full: 1..1024)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure")
    parser.add_argument("--baseline_max_envs", type=int, default=256, help="0: no baseline")
    parser.add_argument("--obs_mode", default="state", choices=["state", "pixels"], help="pixels: every camera")
    parser.add_argument("--image_size", type=int, default=64, help="pixels only")
    parser.add_argument("--render_backend", default="auto", help="pixels only: auto | gsplat | reference")
    args = parser.parse_args()
    if args.baseline_max_envs < 0:
        parser.error(f"--baseline_max_envs must be >= 0 (0: no baseline), got {args.baseline_max_envs}")
    env_kwargs = {}
    if args.obs_mode == "pixels":
        env_kwargs = {"obs_mode": "pixels", "image_size": args.image_size, "render_backend": args.render_backend}

    default_cases = (
        "PandaPickCube-v0:mujoco,PandaPickCube-v0:mjx:warp,"
        "CartpoleBalance-v0:mujoco,CartpoleBalance-v0:mjx:jax,CartpoleBalance-v0:mjx:warp"
    )
    if not args.quick:
        default_cases += ",PandaPickCube-v0:mjx:jax"
    cases = parse_cases(args.cases or default_cases)
    sizes = [int(n) for n in (args.num_envs or ("1,16,64" if args.quick else "1,16,64,256,1024")).split(",")]
    steps = args.steps or (20 if args.quick else 100)
    for name, physics_paths in cases.items():
        env_id = f"serl_gs/{name}"
        base_rates: dict[int, float] = {}
        for n in sizes:
            n_base = baseline_size(n, args.baseline_max_envs)
            if n_base is not None and n_base not in base_rates:
                log(f"{name}: baseline SyncVectorEnv x{n_base} ...")
                base_rates[n_base] = baseline(env_id, n_base, max(4, steps // 2), **env_kwargs)
            for physics, impl in physics_paths:
                log(f"{name}: {physics}{'' if physics == 'mujoco' else ':' + impl} x{n} ...")
                value = ours(env_id, physics, impl, n, steps, **env_kwargs)
                emit(
                    "env",
                    "env_steps_per_s",
                    value,
                    "1/s",
                    baseline=None if n_base is None else BASELINE,
                    baseline_value=base_rates.get(n_base),
                    config={
                        "task": name,
                        "physics": physics,
                        "mjx_impl": None if physics == "mujoco" else resolve_mjx_impl(impl),
                        "num_envs": n,
                        "baseline_num_envs": n_base,
                        "steps": steps,
                        "jax_backend": jax.default_backend(),
                        **env_kwargs,
                    },
                    quick=args.quick,
                )


if __name__ == "__main__":
    main()
