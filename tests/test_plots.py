"""The figures on grey square and RGB non-square images: the retina's pixel rule in the
glimpse boxes, what `show_image` draws, and that every figure writes a readable file."""

import math

import pytest
import torch
from PIL import Image

import plots
from plots import (animate_glimpses, draw_report, glimpse_boxes, plot_glimpses, plot_image_explanation,
                   plot_reconstructions, pyplot, show_image)

SIDES = [8, 16]


def test_glimpse_boxes_on_a_30_by_50_image():
    """H = 30, W = 50: centre = floor((l + 1) * (25, 15)), top-left = centre - side // 2."""
    l = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [0.5, -0.5]])  # (T, 2)
    corners = glimpse_boxes(l, image_size=(30, 50), sides=SIDES)  # (T, K, 2)
    assert corners.shape == (4, 2, 2)
    centres = [(50, 30), (0, 0), (25, 15), (37, 7)]  # (column, row); 1.5 * 25 = 37.5 -> 37
    for t, (cx, cy) in enumerate(centres):
        assert corners[t, 0].tolist() == [cx - 4, cy - 4]
        assert corners[t, 1].tolist() == [cx - 8, cy - 8]
    # An int is a square image.
    assert torch.equal(glimpse_boxes(l, image_size=28, sides=SIDES), glimpse_boxes(l, image_size=(28, 28), sides=SIDES))
    assert glimpse_boxes(l[2:3], image_size=28, sides=[8])[0, 0].tolist() == [10, 10]


def test_show_image_draws_rgb_and_grey_clipped():
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2)
    rgb = torch.rand(3, 6, 10)
    rgb[0, 0, 0], rgb[1, 0, 0] = 1.5, -0.5  # out of [0, 1]: clipped
    shown = show_image(a, rgb)
    array = torch.as_tensor(shown.get_array()[:])
    assert array.shape == (6, 10, 3)
    torch.testing.assert_close(array.float(), rgb.clamp(0, 1).permute(1, 2, 0))
    assert array[0, 0, 0] == 1.0 and array[0, 0, 1] == 0.0
    grey = torch.rand(1, 6, 10)
    shown = show_image(b, grey)
    assert shown.get_array().shape == (6, 10) and shown.get_cmap().name == "gray"
    assert shown.get_clim() == (0, 1)
    torch.testing.assert_close(torch.as_tensor(shown.get_array()[:]).float(), grey[0])
    assert not a.axison and not b.axison
    with pytest.raises(ValueError, match="C = 1 or 3"):
        show_image(a, torch.rand(2, 6, 10))
    plt.close(fig)


def test_draw_glimpses_limits_follow_h_and_w():
    plt = pyplot()
    fig, ax = plt.subplots()
    plots._draw_glimpses(ax, torch.rand(3, 48, 64), torch.zeros(3, 2), SIDES)
    assert ax.get_xlim() == (-0.5, 63.5) and ax.get_ylim() == (47.5, -0.5)
    assert len(ax.patches) == 3 * len(SIDES)
    plt.close(fig)


def batch(shape, *, N=3, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, *shape, generator=g)
    l = torch.rand(N, T, 2, generator=g) * 2 - 1
    decoded = torch.rand(N, T, *shape, generator=g)
    y = torch.arange(N)
    preds = torch.randint(0, 10, (N, T), generator=g)
    return x, y, l, preds, decoded


def size_of(path):
    with Image.open(path) as image:
        return image.size, getattr(image, "n_frames", 1)


@pytest.mark.parametrize("shape", [(3, 48, 64), (1, 28, 28)], ids=["rgb-48x64", "grey-28x28"])
def test_every_figure_is_written(tmp_path, shape):
    x, y, l, preds, decoded = batch(shape)
    T = l.shape[1]
    plot_glimpses(x, l, str(tmp_path / "glimpses.png"), sides=SIDES, labels=y, preds=preds[:, -1])
    plot_reconstructions(x, l, decoded, str(tmp_path / "recon.png"), sides=SIDES, labels=y)
    animate_glimpses(x, l, str(tmp_path / "glimpses.gif"), sides=SIDES, labels=y, preds=preds)
    top = [[("class_%d" % k, p) for k, p in zip((t, t + 1, t + 2), (0.6, 0.3, 0.1))] for t in range(T)]
    plot_image_explanation(x[0], l[0], decoded[0], top, str(tmp_path / "explain.png"), sides=SIDES, title="one")
    for name in ("glimpses.png", "recon.png", "explain.png"):
        (w, h), frames = size_of(tmp_path / name)
        assert w > 100 and h > 100 and frames == 1, name
    assert size_of(tmp_path / "glimpses.gif")[1] == T
    # The reconstructions are wider than tall: 1 + T columns for 3 rows.
    (w, h), _ = size_of(tmp_path / "recon.png")
    assert w > h


def test_draw_report_with_the_input_as_its_own_clean_image(tmp_path):
    """Image folders give x_clean = x (RGB, H != W): no separate 'clean' column."""
    x, y, l, preds, decoded = batch((3, 48, 64), N=2, T=3)
    T = 3
    curve = [0.1] * T
    result = {k: curve for k in ("recon_mse", "recon_mse_se", "recon_bce", "recon_bce_se", "ig", "ig_se", "eig",
                                 "eig_se", "eig_gap", "eig_gap_se", "eig_over_ig")}
    reliability = {"confidence": [[0.5, 0.9]] * T, "accuracy": [[0.4, 1.0]] * T, "count": [[3, 0]] * T}
    draw_report(str(tmp_path / "same"), (x, x, y, l, preds, decoded), result, reliability, sides=SIDES,
                run_name="folder")
    draw_report(str(tmp_path / "other"), (x, x.flip(-1), y, l, preds, decoded), result, reliability,
                sides=SIDES, run_name="folder")
    for name in ("reconstructions.png", "reconstruction_error.png", "information_gain.png", "reliability.png",
                 "glimpses.png", "glimpses.gif"):
        assert (tmp_path / "same" / name).is_file(), name
    # With a clean image that is not the input, the reconstructions get one more column.
    same = size_of(tmp_path / "same" / "reconstructions.png")[0]
    other = size_of(tmp_path / "other" / "reconstructions.png")[0]
    assert same[1] == other[1] and math.isclose(other[0] / same[0], (2 + T) / (1 + T), rel_tol=0.02)


def test_image_explanation_for_eight_glimpses_and_bad_input(tmp_path):
    x, _, l, _, decoded = batch((3, 30, 50), N=1, T=8)
    top = [[("a very long class name indeed", 0.9), ("dog", 0.07), ("cat", 0.03), ("fourth", 0.0)]] * 8
    path = tmp_path / "explain8.png"
    plot_image_explanation(x[0], l[0], decoded[0], top, str(path), sides=SIDES)
    (w, h), _ = size_of(path)
    assert w > 3 * h  # one column per glimpse: a wide strip
    with pytest.raises(ValueError, match="8 glimpses in l but 8 decoded images and 7 beliefs"):
        plot_image_explanation(x[0], l[0], decoded[0], top[:7], str(path), sides=SIDES)
