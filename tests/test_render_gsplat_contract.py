"""The gsplat backend's keywords against the installed gsplat's source, read with `ast` (nothing imported).
Its tensor plumbing runs through gsplat's real Python in test_render_gsplat_standin.py."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from serl_gs.render.gsplat_backend import rasterize_gsplat


def rasterization_parameters() -> set[str]:
    spec = importlib.util.find_spec("gsplat")  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gsplat is not installed")
    source = Path(spec.submodule_search_locations[0], "rendering.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == "rasterization":
            return {a.arg for a in node.args.args + node.args.kwonlyargs}
    raise AssertionError("gsplat/rendering.py has no rasterization()")


def backend_keywords() -> set[str]:
    source = Path(sys.modules[rasterize_gsplat.__module__].__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "rasterization":
            return {k.arg for k in node.keywords}
    raise AssertionError("gsplat_backend never calls rasterization()")


def test_every_keyword_we_pass_exists_in_the_installed_gsplat():
    ours, theirs = backend_keywords(), rasterization_parameters()
    assert ours <= theirs, f"not in gsplat.rasterization: {sorted(ours - theirs)}"
    assert {"means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "width", "height"} <= ours
