"""Where an MJX physics step spends its time: each pipeline stage jitted alone and timed, per batch size.

    python -m benchmarks.bench_mjx_stages --quick                 # Panda, B=1 (~2 min on 2 CPU cores: compiles)
    python -m benchmarks.bench_mjx_stages --num_envs 1,32,1024    # on a GPU

One JSON line per (stage, num_envs): ms per call, with the full `mjx.step` as the baseline, so `ratio` is the
stage's share of a step. This is the profile behind docs/physics-paths.md (MJX on a CPU is dominated by
`kinematics`, and that stage grows much faster than linearly with the batch there).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import mujoco

from benchmarks._report import emit, log
from envs.panda_pick_cube import ASSET
from serl_gs.env_options import import_mjx

mjx = import_mjx()
from mujoco.mjx._src import collision_driver, constraint, forward, passive, smooth, solver  # noqa: E402

STAGES = {
    "kinematics": smooth.kinematics,
    "com_pos": smooth.com_pos,
    "camlight": smooth.camlight,
    "crb": smooth.crb,
    "factor_m": smooth.factor_m,
    "collision": collision_driver.collision,
    "make_constraint": constraint.make_constraint,
    "transmission": smooth.transmission,
    "com_vel": smooth.com_vel,
    "passive": passive.passive,
    "rne": smooth.rne,
    "fwd_actuation": forward.fwd_actuation,
    "fwd_acceleration": forward.fwd_acceleration,
    "solve": solver.solve,
}


def _ms_per_call(fn, data, calls: int) -> tuple[float, float]:
    """(compile seconds, milliseconds per call) of jit(vmap(fn)) on `data`."""
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(fn)).lower(data).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(data))
    start = time.perf_counter()
    for _ in range(calls):
        out = compiled(data)
    jax.block_until_ready(out)
    return compile_s, 1e3 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num_envs", default=None, help="comma list (default 1,32; quick 1)")
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    model = mujoco.MjModel.from_xml_path(str(ASSET))
    mx = mjx.put_model(model)
    data = mjx.make_data(mx).replace(qpos=jnp.asarray(model.key_qpos[0]), ctrl=jnp.asarray(model.key_ctrl[0]))
    data = mjx.forward(mx, data)
    for n in [int(b) for b in (args.num_envs or ("1" if args.quick else "1,32")).split(",")]:
        batch = jax.tree.map(lambda x, n=n: jnp.broadcast_to(x, (n, *x.shape)), data)
        log(f"full step, B={n} ...")
        step_compile, step_ms = _ms_per_call(lambda d: mjx.step(mx, d), batch, args.calls)
        for name, stage in STAGES.items():
            log(f"{name}, B={n} ...")
            compile_s, ms = _ms_per_call(lambda d, stage=stage: stage(mx, d), batch, args.calls)
            config = {"model": "panda_pick_cube", "stage": name, "num_envs": n, "compile_s": round(compile_s, 2),
                      "step_compile_s": round(step_compile, 2), "jax_backend": jax.default_backend()}  # fmt: skip
            emit("mjx_stages", "ms_per_call (lower is better)", ms, "ms", baseline="mjx.step", baseline_value=step_ms,
                 config=config, quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
