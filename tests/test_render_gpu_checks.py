"""The render half of the GPU script in its dry run: every check's code on a CPU at tiny sizes, gsplat's
real Python over the CPU stand-in, JSON lines in the folder given."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gsplat")


@pytest.mark.slow  # ~15 s on 2 idle cores: a stage per check, JAX jits for the stream-race stress
def test_dry_run_writes_passing_rows_for_every_check(tmp_path, capsys):
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
