"""Every figure and animation: glimpse paths, reconstructions, per-glimpse curves, the GIF,
and the explanation of one image.

Images are (N, C, H, W) in [0, 1] with C = 1 (drawn grey) or C = 3 (drawn RGB) and any
H, W; every image is drawn by `show_image`. Locations l (N, T, 2) are in [-1, 1]^2 as in
modules.py (x = column, y = row).
"""

import os

import numpy as np
import torch

from modules import pixel_centre


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def show_image(ax, image):
    """Draw image (C, H, W), C = 1 (grey colormap) or C = 3 (RGB), clipped to [0, 1], on ax
    without axes; returns the AxesImage."""
    image = torch.as_tensor(image).detach().cpu().float()
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"show_image: an image is (C, H, W) with C = 1 or 3, got shape {tuple(image.shape)}")
    image = image.clamp(0.0, 1.0)
    ax.axis("off")
    if image.shape[0] == 1:
        return ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    return ax.imshow(image.permute(1, 2, 0).numpy())  # (H, W, 3)


def _half(image_size):
    """(W/2, H/2) from image_size = (H, W), or an int for a square image."""
    H, W = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    return torch.tensor([W / 2.0, H / 2.0])


def glimpse_boxes(l, *, image_size, sides):
    """Top-left corners (T, K, 2) in pixels (column, row) of every retina patch for locations
    l (T, 2) on an image of image_size = (H, W) (an int for a square one).

    Uses the retina's own rule: centre = floor((l + 1) * (W/2, H/2)), top-left = centre - S // 2.
    """
    centre = pixel_centre(l, _half(image_size))  # (T, 2)
    return torch.stack([centre - side // 2 for side in sides], 1)  # (T, K, 2)


def class_name(c, classes=None):
    """Label c (an int or a 0-d tensor) as its class name, or as the number without classes."""
    return str(int(c)) if classes is None else str(classes[int(c)])


def _aspect(images):
    """Width / height of images (..., H, W), kept within [0.5, 2] for the figure's size."""
    return min(max(images.shape[-1] / images.shape[-2], 0.5), 2.0)


def _grid(n, aspect, *, width, height):
    """(rows, cols, figsize) of a near-square grid of n images, each cell width * aspect by height."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return rows, cols, (width * aspect * cols, height * rows)


def plot_glimpses(images, l, path, *, sides, labels=None, preds=None, max_images=9, classes=None):
    """Save a grid of images (N, C, H, W) with their glimpse path l (N, T, 2) and patch boxes."""
    plt = pyplot()
    n = min(max_images, images.shape[0])
    rows, cols, figsize = _grid(n, _aspect(images), width=2.2, height=2.2)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        _draw_glimpses(ax, images[i], l[i], sides)
        title = []
        if labels is not None:
            title.append(f"y={class_name(labels[i], classes)}")
        if preds is not None:
            title.append(f"pred={class_name(preds[i], classes)}")
        ax.set_title(" ".join(title), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _glimpse_colours(T):
    """One viridis colour (4,) per glimpse 1..T."""
    return pyplot().cm.viridis(np.linspace(0, 1, T))


def _draw_glimpses(ax, image, l, sides, upto=None):
    """Image (C, H, W) with the path and boxes of glimpses 1..upto (all when None) of l (T, 2)."""
    from matplotlib.patches import Rectangle

    H, W = image.shape[-2:]
    T = l.shape[0] if upto is None else upto
    colours = _glimpse_colours(l.shape[0])
    show_image(ax, image)
    corners = glimpse_boxes(l.cpu(), image_size=(H, W), sides=sides)  # (T, K, 2)
    centres = pixel_centre(l.cpu(), _half((H, W))).numpy()  # (T, 2)
    ax.plot(centres[:T, 0], centres[:T, 1], "-", color="white", lw=0.8, alpha=0.7)
    for t in range(T):
        for k, side in enumerate(sides):
            x0, y0 = corners[t, k].tolist()
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), side, side, fill=False, edgecolor=colours[t],
                                   lw=1.5 if t == T - 1 else 0.8))
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)


def plot_reconstructions(images, l, decoded, path, *, sides, clean=None, labels=None, classes=None):
    """One row per image: the input with its glimpses, the clean image (if given), then the
    VAE's decoded mean image after glimpse 1..T. images (N, C, H, W), l (N, T, 2),
    decoded (N, T, c, h, w), clean (N, c, h, w); c = 1 is drawn grey, c = 3 in colour."""
    plt = pyplot()
    N, T = decoded.shape[:2]
    lead = 1 if clean is None else 2
    fig, axes = plt.subplots(N, lead + T, figsize=(1.3 * _aspect(images) * (lead + T), 1.4 * N), squeeze=False)
    for i in range(N):
        _draw_glimpses(axes[i, 0], images[i], l[i], sides)
        if labels is not None:
            axes[i, 0].set_title(f"input, y={class_name(labels[i], classes)}", fontsize=7)
        if clean is not None:
            show_image(axes[i, 1], clean[i])
            axes[i, 1].set_title("clean", fontsize=7)
        for t in range(T):
            ax = axes[i, lead + t]
            show_image(ax, decoded[i, t])
            if i == 0:
                ax.set_title(f"after t={t + 1}", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_image_explanation(image, l, decoded, top, path, *, sides, title=None):
    """One image explained glimpse by glimpse, saved to path.

    Left, the image (C, H, W) with its glimpse path l (T, 2) and patch boxes, glimpse t in
    the t-th viridis colour; then one column per glimpse t = 1..T: the VAE's decoded mean
    image after glimpse t (decoded (T, c, h, w)) and below it the top classes of the belief
    p_t as horizontal bars in glimpse t's colour, each labelled with its name and
    probability. top: T lists of (class name, probability), most probable first; the first
    3 of each are drawn (names longer than 18 characters cut).
    """
    plt = pyplot()
    T = l.shape[0]
    if decoded.shape[0] != T or len(top) != T:
        raise ValueError(f"plot_image_explanation: {T} glimpses in l but {decoded.shape[0]} decoded "
                         f"images and {len(top)} beliefs")
    aspect = _aspect(image)
    fig = plt.figure(figsize=(2.4 * aspect + 1.45 * T, 3.3), layout="constrained")
    grid = fig.add_gridspec(2, T + 1, width_ratios=[1.6 * aspect] + [1.0] * T)
    _draw_glimpses(fig.add_subplot(grid[:, 0]), image, l, sides)
    fig.axes[0].set_title("input and glimpses", fontsize=8)
    colours = _glimpse_colours(T)
    for t in range(T):
        ax = fig.add_subplot(grid[0, t + 1])
        show_image(ax, decoded[t])
        ax.set_title(f"after t={t + 1}", fontsize=8)
        ax = fig.add_subplot(grid[1, t + 1])
        shown = top[t][:3]
        rows = np.arange(len(shown))
        ax.barh(rows, [float(p) for _, p in shown], height=0.4, color=colours[t], edgecolor="black", linewidth=0.4)
        for row, (name, p) in zip(rows, shown):  # the label above its bar, so long names keep the width
            name = str(name) if len(str(name)) <= 18 else str(name)[:17] + "…"
            ax.text(0, row - 0.26, f"{name} {float(p):.0%}", fontsize=6.5, va="bottom")
        ax.set_ylim(len(shown) - 0.5, -0.75)  # the most probable class on top
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.set_xticks([0, 0.5, 1], ["0", ".5", "1"], fontsize=6)
        ax.tick_params(length=2)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def plot_curves(panels, path, *, title=None):
    """Per-glimpse curves, one panel each: panels = {panel title: {label: (values (T,), stderr (T,) or None)}}."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, (values, err) in curves.items():
            t = np.arange(1, len(values) + 1)
            ax.plot(t, values, marker="o", ms=3, label=label)
            if err is not None:
                ax.fill_between(t, np.asarray(values) - err, np.asarray(values) + err, alpha=0.25)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("glimpse t")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def animate_glimpses(images, l, path, *, sides, labels=None, preds=None, classes=None):
    """An animated GIF of the glimpse path on images (N, C, H, W), one frame per glimpse."""
    plt = pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    N, T = l.shape[:2]
    rows, cols, figsize = _grid(N, _aspect(images), width=2.0, height=2.1)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)

    def frame(t):
        for i, ax in enumerate(axes.flat):
            ax.clear()
            ax.axis("off")
            if i < N:
                _draw_glimpses(ax, images[i], l[i], sides, upto=t + 1)
                bits = [f"t={t + 1}"]
                if labels is not None:
                    bits.append(f"y={class_name(labels[i], classes)}")
                if preds is not None:
                    bits.append(f"pred={class_name(preds[i, t], classes)}")
                ax.set_title(" ".join(bits), fontsize=7)

    animation = FuncAnimation(fig, frame, frames=T)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    animation.save(path, writer=PillowWriter(fps=1))
    plt.close(fig)


def save_figure(fig, path):
    """Save fig as path (folders created) and close it."""
    plt = pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(reliability, path, *, title=None):
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    glimpse t (bins with no image left out), and the diagonal of a calibrated belief."""
    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for t, (conf, acc, count) in enumerate(zip(reliability["confidence"], reliability["accuracy"],
                                               reliability["count"]), 1):
        kept = [(c, a) for c, a, n in zip(conf, acc, count) if n > 0]
        ax.plot([c for c, _ in kept], [a for _, a in kept], marker="o", markersize=3, label=f"t={t}")
    ax.set_xlabel("confidence max_c p_t(c)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def draw_report(report_dir, first, result, reliability, *, sides, run_name, classes=None):
    """The report's figures from the first test images `first` = (x (N, C, H, W), x_clean
    (N, c, h, w), y, l, preds (N, T), decoded (N, T, c, h, w)), the per-glimpse `result` of
    the explanation and its `reliability` bins. The clean image gets its own column only when
    it is not the input itself (translated / cluttered sets)."""
    x, x_clean, y, l, preds, decoded = first
    cluttered = x.shape != x_clean.shape or not torch.equal(x, x_clean)
    plot_reconstructions(x, l, decoded, os.path.join(report_dir, "reconstructions.png"), sides=sides,
                         clean=x_clean if cluttered else None, labels=y, classes=classes)
    plot_curves({"per-pixel MSE to the clean image": {"MSE": (result["recon_mse"], result["recon_mse_se"])},
                 "per-pixel BCE to the clean image": {"BCE": (result["recon_bce"], result["recon_bce_se"])}},
                os.path.join(report_dir, "reconstruction_error.png"),
                title=f"{run_name}: VAE reconstruction after glimpse t")
    plot_curves({"information gain (nats)": {"realised IG": (result["ig"], result["ig_se"]),
                                             "expected EIG": (result["eig"], result["eig_se"]),
                                             "consistency gap": (result["eig_gap"], result["eig_gap_se"])},
                 "EIG / IG": {"ratio": (result["eig_over_ig"], None)}},
                os.path.join(report_dir, "information_gain.png"),
                title=f"{run_name}: information gain per glimpse")
    plot_reliability(reliability, os.path.join(report_dir, "reliability.png"),
                     title=f"{run_name}: reliability of the belief after glimpse t")
    plot_glimpses(x, l, os.path.join(report_dir, "glimpses.png"), sides=sides, labels=y, preds=preds[:, -1],
                  classes=classes)
    animate_glimpses(x, l, os.path.join(report_dir, "glimpses.gif"), sides=sides, labels=y, preds=preds,
                     classes=classes)
