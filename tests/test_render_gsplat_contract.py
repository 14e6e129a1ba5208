"""The gsplat backend's call, checked on a CPU without importing gsplat (which builds CUDA code on import):
its keywords against gsplat's source, read with `ast`, and its tensor plumbing against a stand-in
`rasterization` that enforces gsplat 1.5.3's documented shape contract and draws with the reference."""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from serl_gs.render.gsplat_backend import rasterize_gsplat
from serl_gs.render.reference import rasterize_reference


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


def fake_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kw):
    """gsplat 1.5.3's asserts on shapes (batch dims = envs), then the reference's pixels."""
    b, n = means.shape[:2]
    c = viewmats.shape[-3]
    assert quats.shape == (b, n, 4) and scales.shape == (b, n, 3) and opacities.shape == (b, n)
    assert viewmats.shape == (b, c, 4, 4) and Ks.shape == (b, c, 3, 3)
    assert colors.shape[:2] == (b, n) and colors.shape[-1] == 3 and (kw["sh_degree"] + 1) ** 2 <= colors.shape[2]
    assert kw["backgrounds"] is None or kw["backgrounds"].shape == (b, c, 3)
    assert kw["eps2d"] == 0.3 and kw["rasterize_mode"] == "classic" and kw["packed"] is True
    with_depth = kw["render_mode"] == "RGB+ED"
    rgb, depth = rasterize_reference(
        means, quats, scales[0], opacities[0], colors[0], viewmats, Ks, width, height,
        sh_degree=kw["sh_degree"], near_plane=kw["near_plane"], far_plane=kw["far_plane"],
        background=None if kw["backgrounds"] is None else kw["backgrounds"][0, 0], with_depth=with_depth,
    )  # fmt: skip
    out = torch.cat([rgb, depth[..., None]], -1) if with_depth else rgb
    return out, torch.zeros(out.shape[:-1] + (1,)), {}


def test_backend_plumbing_matches_the_reference(monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", types.SimpleNamespace(rasterization=fake_rasterization))
    g = torch.Generator().manual_seed(0)
    b, n, size = 2, 300, 24
    means = torch.rand(b, n, 3, generator=g) * 2 - 1 + torch.tensor([0.0, 0.0, 3.0])
    quats = torch.randn(b, n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) - 4)
    opacities = torch.rand(n, generator=g)
    sh = torch.randn(n, 4, 3, generator=g)
    viewmats = torch.eye(4).expand(b, 2, 4, 4).clone()
    viewmats[:, 1, 0, 3] = 0.2
    ks = torch.tensor([[20.0, 0, 12], [0, 20.0, 12], [0, 0, 1]]).expand(b, 2, 3, 3)
    args = (means, quats, scales, opacities, sh, viewmats, ks, size, size)
    kw = dict(sh_degree=1, near_plane=0.01, far_plane=100.0, background=torch.tensor([0.1, 0.2, 0.3]))
    rgb, depth = rasterize_gsplat(*args, with_depth=True, **kw)
    ref_rgb, ref_depth = rasterize_reference(*args, with_depth=True, **kw)
    assert rgb.shape == (b, 2, size, size, 3) and depth.shape == (b, 2, size, size)
    torch.testing.assert_close(rgb, ref_rgb)
    torch.testing.assert_close(depth, ref_depth)
    rgb_only, none = rasterize_gsplat(*args, **kw)
    assert none is None
    torch.testing.assert_close(rgb_only, ref_rgb)
