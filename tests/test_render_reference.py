"""The reference rasterizer against closed forms and a serial, pixel-by-pixel oracle of gsplat's maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from serl_gs.render.config import ALPHA_THRESHOLD, EPS2D, MAX_ALPHA, TRANSMITTANCE_THRESHOLD
from serl_gs.render.reference import rasterize_reference, sh_basis
from serl_gs.render.scene import SH_C0

F = 40.0  # focal length in pixels of the test camera
W = H = 32


def camera(batch=1, cams=1, width=W, height=H, focal=F):
    """Identity view (camera at the origin looking down +z, OpenCV axes) and a centred pinhole."""
    view = torch.eye(4).expand(batch, cams, 4, 4).clone()
    k = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]]).expand(batch, cams, 3, 3)
    return view, k.clone()


def render(means, quats, scales, opacities, rgb, view=None, ks=None, *, width=W, height=H, **kwargs):
    """Renders colours given as RGB (degree-0 SH), Gaussians shared by every env in the batch."""
    means = torch.as_tensor(means, dtype=torch.float32)
    if means.ndim == 2:
        means = means[None]
    b = means.shape[0]
    quats = torch.as_tensor(quats, dtype=torch.float32).expand(b, -1, -1)
    sh = ((torch.as_tensor(rgb, dtype=torch.float32) - 0.5) / SH_C0)[:, None, :]
    if view is None:
        view, ks = camera(b, width=width, height=height)
    kwargs.setdefault("sh_degree", 0)
    return rasterize_reference(
        means,
        quats,
        torch.as_tensor(scales, dtype=torch.float32),
        torch.as_tensor(opacities, dtype=torch.float32),
        kwargs.pop("sh", sh),
        view,
        ks,
        width,
        height,
        near_plane=0.01,
        far_plane=100.0,
        **kwargs,
    )


def test_isotropic_gaussian_matches_the_closed_form():
    # One isotropic Gaussian on the optical axis: the image is colour * alpha(pixel), alpha a 2D Gaussian
    # centred on the projected mean with variance (s f / z)^2 + 0.3 (the low-pass), zero below 1/255.
    s, z, opacity, rgb = 0.05, 2.0, 0.8, (0.9, 0.4, 0.1)
    image, _ = render([[0.0, 0.0, z]], [[1.0, 0, 0, 0]], [[s, s, s]], [opacity], [rgb])
    var = (s * F / z) ** 2 + EPS2D
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    alpha = np.minimum(opacity * np.exp(-((xs - W / 2) ** 2 + (ys - H / 2) ** 2) / (2 * var)), MAX_ALPHA)
    alpha[alpha < ALPHA_THRESHOLD] = 0
    expected = alpha[..., None] * np.array(rgb)
    np.testing.assert_allclose(image[0, 0].numpy(), expected, atol=1e-5)
    peak = np.unravel_index(int(image[0, 0, ..., 0].argmax()), (H, W))
    assert peak in {(H // 2 - 1, W // 2 - 1), (H // 2, W // 2), (H // 2 - 1, W // 2), (H // 2, W // 2 - 1)}


@pytest.mark.parametrize("z", [1.0, 2.0, 4.0])
def test_projected_radius_follows_scale_times_focal_over_depth(z):
    s = 0.1
    image, _ = render([[0.0, 0.0, z]], [[1.0, 0, 0, 0]], [[s, s, s]], [0.99], [(1.0, 1.0, 1.0)])
    row = image[0, 0, H // 2, :, 0].numpy()  # pixel centres at x + 0.5, 0.5 px off the peak
    xs = np.arange(W) + 0.5 - W / 2
    inside = row > 0.05
    # Fit log alpha = log op - (x^2 + 0.25) / (2 var): var from the slope over x^2.
    slope = np.polyfit(xs[inside] ** 2, np.log(row[inside]), 1)[0]
    measured_sigma = math.sqrt(-1 / (2 * slope) - EPS2D)
    assert measured_sigma == pytest.approx(s * F / z, rel=1e-3)


def test_nearer_gaussian_occludes_farther_whatever_the_memory_order():
    means = [[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]  # red in front, blue behind, on the same ray
    colours = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    args = ([[1.0, 0, 0, 0]] * 2, [[0.2, 0.2, 0.2], [0.6, 0.6, 0.6]], [0.95, 0.95])
    front_first, _ = render(means, *args, colours)
    back_first, _ = render(means[::-1], *args[:1], args[1][::-1], args[2][::-1], colours[::-1])
    assert torch.equal(front_first, back_first)
    red, _, blue = front_first[0, 0, H // 2, W // 2].tolist()  # the pixel centre is 0.5 px off in x and y
    alpha_red = 0.95 * math.exp(-0.25 / ((0.2 * F / 1.0) ** 2 + EPS2D))
    alpha_blue = 0.95 * math.exp(-0.25 / ((0.6 * F / 3.0) ** 2 + EPS2D))
    assert red == pytest.approx(alpha_red, rel=1e-5)
    assert blue == pytest.approx((1 - alpha_red) * alpha_blue, rel=1e-4)  # seen only through the red one


def test_depth_is_the_expected_camera_z():
    _, depth = render([[0.0, 0.0, 2.5]], [[1.0, 0, 0, 0]], [[0.3] * 3], [0.99], [(1.0, 1.0, 1.0)], with_depth=True)
    assert depth[0, 0, H // 2, W // 2] == pytest.approx(2.5, rel=1e-5)
    assert depth[0, 0, 0, 0] == 0.0  # nothing drawn in the corner: depth 0, as gsplat's "ED"


def test_background_fills_by_remaining_transmittance():
    bg = torch.tensor([0.2, 0.3, 0.4])
    image, _ = render([[5.0, 5.0, 1.0]], [[1.0, 0, 0, 0]], [[0.01] * 3], [0.5], [(1.0, 1.0, 1.0)], background=bg)
    np.testing.assert_allclose(image[0, 0, 0, 0].numpy(), bg.numpy(), atol=1e-7)  # nothing drawn there


def test_gaussians_behind_the_camera_or_off_screen_draw_nothing():
    image, _ = render(
        [[0.0, 0.0, -1.0], [0.0, 0.0, 0.001], [100.0, 0.0, 1.0], [0.0, 0.0, 200.0]],
        [[1.0, 0, 0, 0]] * 4,
        [[0.1] * 3] * 4,
        [0.9] * 4,
        [(1.0, 1.0, 1.0)] * 4,
    )
    assert image.abs().max() == 0


def random_scene(n, seed, batch=1):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(batch, n, 3, generator=g) * torch.tensor([2.0, 2.0, 3.0]) + torch.tensor([-1.0, -1.0, 1.0])
    quats = torch.randn(batch, n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * 2.5 - 4.5)
    opacities = torch.sigmoid(torch.randn(n, generator=g) * 2 + 1)
    sh = torch.randn(n, 16, 3, generator=g) * 0.5
    return means, quats, scales, opacities, sh


def serial_oracle(means, quats, scales, opacities, colors, width, height, focal, near=0.01, far=100.0):
    """gsplat's forward pass for one camera at the origin, written naively in float64: project each
    Gaussian, sort by depth, then walk every pixel through the sorted list exactly as the CUDA kernel does."""
    cx, cy = width / 2, height / 2
    image = np.zeros((height, width, 3))
    projected = []
    for i in range(len(means)):
        x, y, z = means[i]
        if z < near or z > far or opacities[i] < ALPHA_THRESHOLD:
            continue
        w, qx, qy, qz = quats[i] / np.linalg.norm(quats[i])
        rot = np.array(
            [
                [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - w * qz), 2 * (qx * qz + w * qy)],
                [2 * (qx * qy + w * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - w * qx)],
                [2 * (qx * qz - w * qy), 2 * (qy * qz + w * qx), 1 - 2 * (qx * qx + qy * qy)],
            ]
        )
        cov = rot @ np.diag(scales[i] ** 2) @ rot.T
        lim_x = (width - cx) / focal + 0.3 * (0.5 * width / focal)
        lim_y = (height - cy) / focal + 0.3 * (0.5 * height / focal)
        tx = z * min(lim_x, max(-lim_x, x / z))
        ty = z * min(lim_y, max(-lim_y, y / z))
        jac = np.array([[focal / z, 0, -focal * tx / z**2], [0, focal / z, -focal * ty / z**2]])
        cov2 = jac @ cov @ jac.T + EPS2D * np.eye(2)
        if np.linalg.det(cov2) <= 0:
            continue
        mean2 = np.array([focal * x / z + cx, focal * y / z + cy])
        extend = min(3.33, math.sqrt(2 * math.log(opacities[i] / ALPHA_THRESHOLD)))
        rx, ry = math.ceil(extend * math.sqrt(cov2[0, 0])), math.ceil(extend * math.sqrt(cov2[1, 1]))
        if mean2[0] + rx <= 0 or mean2[0] - rx >= width or mean2[1] + ry <= 0 or mean2[1] - ry >= height:
            continue
        projected.append((z, mean2, np.linalg.inv(cov2), opacities[i], colors[i]))
    projected.sort(key=lambda p: p[0])
    for py in range(height):
        for px in range(width):
            t, pixel = 1.0, np.zeros(3)
            for _, mean2, conic, opacity, color in projected:
                d = mean2 - (px + 0.5, py + 0.5)
                sigma = 0.5 * (conic[0, 0] * d[0] ** 2 + conic[1, 1] * d[1] ** 2) + conic[0, 1] * d[0] * d[1]
                alpha = min(MAX_ALPHA, opacity * math.exp(-sigma))
                if sigma < 0 or alpha < ALPHA_THRESHOLD:
                    continue
                if t * (1 - alpha) <= TRANSMITTANCE_THRESHOLD:
                    break
                pixel += color * alpha * t
                t *= 1 - alpha
            image[py, px] = pixel
    return image


def test_matches_a_serial_per_pixel_oracle_of_gsplats_algorithm():
    # Dense, overlapping, anisotropic, some off-screen and some near-opaque Gaussians, SH degree 0.
    means, quats, scales, opacities, sh = random_scene(60, seed=3)
    scales = scales * 4
    opacities[:20] = 0.999
    colors = np.clip(SH_C0 * sh[:, 0].numpy() + 0.5, 0, None)
    view, ks = camera(width=24, height=20, focal=18.0)
    image, _ = rasterize_reference(
        means,
        quats,
        scales,
        opacities,
        sh[:, :1],
        view,
        ks,
        24,
        20,
        sh_degree=0,
        near_plane=0.01,
        far_plane=100.0,
    )
    expected = serial_oracle(
        means[0].double().numpy(), quats[0].double().numpy(), scales.double().numpy(),
        opacities.double().numpy(), colors, 24, 20, 18.0,
    )  # fmt: skip
    assert expected.max() > 0.5  # the scene is not empty
    np.testing.assert_allclose(image[0, 0].numpy(), expected, atol=2e-4)


@pytest.mark.parametrize("tile_size", [3, 16])
def test_tile_size_does_not_change_the_image(tile_size):
    means, quats, scales, opacities, sh = random_scene(120, seed=1)
    view, ks = camera()
    args = (means, quats, scales, opacities, sh, view, ks, W, H)
    kw = dict(sh_degree=3, near_plane=0.01, far_plane=100.0)
    base, _ = rasterize_reference(*args, tile_size=4, **kw)
    other, _ = rasterize_reference(*args, tile_size=tile_size, **kw)
    torch.testing.assert_close(base, other, atol=1e-5, rtol=0)


def test_batched_rendering_equals_rendering_each_env_alone():
    means, quats, scales, opacities, sh = random_scene(150, seed=2, batch=3)
    g = torch.Generator().manual_seed(0)
    view, ks = camera(batch=3, cams=2)
    view[:, 1, :3, 3] = torch.randn(3, 3, generator=g) * 0.2  # a second, shifted camera per env
    kw = dict(sh_degree=2, near_plane=0.01, far_plane=100.0, with_depth=True)
    batched, batched_depth = rasterize_reference(means, quats, scales, opacities, sh, view, ks, W, H, **kw)
    for b in range(3):
        one, one_depth = rasterize_reference(
            means[b : b + 1],
            quats[b : b + 1],
            scales,
            opacities,
            sh,
            view[b : b + 1],
            ks[b : b + 1],
            W,
            H,
            **kw,
        )
        torch.testing.assert_close(batched[b], one[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batched_depth[b], one_depth[0], atol=1e-5, rtol=0)


def test_sh_colour_depends_on_view_direction_like_gsplat():
    # A degree-1 coefficient on the basis term -0.4886 * x: seen from +x and -x the colour differs by sign.
    sh = torch.zeros(1, 4, 3)
    sh[0, 0] = torch.tensor([0.0, 0.0, 0.0])
    sh[0, 3] = torch.tensor([0.5, 0.0, 0.0])  # basis 3 = -0.4886 * dir_x
    dirs = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    values = (sh_basis(1, dirs)[..., None] * sh).sum(1)[:, 0]
    torch.testing.assert_close(values, torch.tensor([-0.5 * 0.4886025119029199, 0.5 * 0.4886025119029199]))
    # End to end: a Gaussian left of the camera (dir from camera has x < 0) gets +0.244 red over 0.5.
    image, _ = render(
        [[-0.3, 0.0, 1.0]], [[1.0, 0, 0, 0]], [[0.05] * 3], [0.999], [(0.5, 0.5, 0.5)], sh=sh, sh_degree=1
    )
    row = image[0, 0, H // 2]
    red_over_green = (row[:, 0] / row[:, 1].clamp_min(1e-6))[row[:, 1] > 0.1]
    dir_x = -0.3 / math.sqrt(0.3**2 + 1.0)
    assert red_over_green.mean().item() == pytest.approx((0.5 - 0.4886025119029199 * 0.5 * dir_x) / 0.5, rel=1e-4)
