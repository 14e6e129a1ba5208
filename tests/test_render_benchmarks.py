"""The render benchmarks' command lines: the render half of the GPU script in its dry run (every check's code
on a CPU at tiny sizes, gsplat's real Python over the CPU stand-in, JSON lines in the folder given), and
bench_render's slice options for a short GPU lease."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow  # ~15 s on 2 idle cores: a stage per check, JAX jits for the stream-race stress
def test_dry_run_writes_passing_rows_for_every_check(tmp_path, capsys):
    pytest.importorskip("gsplat")
    from benchmarks.gpu_render_checks import CHECKS, main

    assert main(["--out", str(tmp_path), "--dry-run"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "render_checks.jsonl").read_text().splitlines()]
    assert {r["bench"] for r in rows} == {"gsplat_vs_reference", "zero_copy", "stream_race", "render"}
    assert all(r.get("ok", True) for r in rows), [r for r in rows if r.get("ok") is False]
    assert all(r["quick"] and "stand-in" in r["device"] for r in rows)
    agreement = {r["config"]["scene"] for r in rows if r["bench"] == "gsplat_vs_reference"}
    assert agreement == {"cartpole/fixed", "random_sh3/camera0", "random_sh3/camera1"}
    sweep = [r for r in rows if r["bench"] == "render"]
    assert {r["baseline"] for r in sweep} == {"python_loop_over_envs", "reference_backend_same_device"}
    assert all(r["value"] > 0 and r["baseline_value"] > 0 for r in sweep)
    assert len(capsys.readouterr().out.splitlines()) == len(rows)  # the same lines on stdout
    assert len(CHECKS) == 4


def test_unknown_check_is_named(tmp_path):
    from benchmarks.gpu_render_checks import run_checks

    with pytest.raises(ValueError, match="unknown checks \\['render'\\]"):
        run_checks(tmp_path, dry_run=True, checks=["render"])


def test_bench_render_runs_the_slice_it_is_given(capsys):
    from benchmarks.bench_render import main

    assert main(["--sizes", "16", "--num_envs", "1,2", "--no_env_step", "--rounds", "1", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["metric"], r["config"]["image_size"], r["config"]["num_envs"]) for r in rows] == [
        ("images_per_s", 16, 1),
        ("images_per_s", 16, 2),
    ]  # no render-share rows: --no_env_step
    assert rows[1]["baseline"] == "python_loop_over_envs"
    with pytest.raises(SystemExit, match="--num_envs takes a comma list of positive integers, got '4,x'"):
        main(["--num_envs", "4,x"])
