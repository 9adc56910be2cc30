"""Every figure and animation: glimpse paths, reconstructions, per-glimpse curves, the GIF.

Images are (N, C_in, H, W) in [0, 1]; locations l (N, T, 2) in [-1, 1]^2 as in modules.py.
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


def glimpse_boxes(l, *, image_size, sides):
    """Top-left corners (T, K, 2) in pixels of every retina patch for locations l (T, 2).

    Uses the retina's own rule: centre = floor((l + 1) / 2 * W), top-left = centre - S // 2.
    """
    centre = pixel_centre(l, image_size / 2.0)  # (T, 2)
    return torch.stack([centre - side // 2 for side in sides], 1)  # (T, K, 2)


def plot_glimpses(images, l, path, *, sides, labels=None, preds=None, max_images=9):
    """Save a grid of images (N, 1, H, W) with their glimpse path l (N, T, 2) and patch boxes."""
    plt = pyplot()
    n = min(max_images, images.shape[0])
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        _draw_glimpses(ax, images[i], l[i], sides)
        title = []
        if labels is not None:
            title.append(f"y={int(labels[i])}")
        if preds is not None:
            title.append(f"pred={int(preds[i])}")
        ax.set_title(" ".join(title), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _draw_glimpses(ax, image, l, sides, upto=None):
    """Image (1, H, W) with the path and boxes of glimpses 1..upto (all when None) of l (T, 2)."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    size = image.shape[-1]
    T = l.shape[0] if upto is None else upto
    colours = plt.cm.viridis(np.linspace(0, 1, l.shape[0]))
    ax.imshow(image[0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    corners = glimpse_boxes(l.cpu(), image_size=size, sides=sides)
    centres = pixel_centre(l.cpu(), size / 2.0).numpy()
    ax.plot(centres[:T, 0], centres[:T, 1], "-", color="white", lw=0.8, alpha=0.7)
    for t in range(T):
        for k, side in enumerate(sides):
            x0, y0 = corners[t, k].tolist()
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), side, side, fill=False, edgecolor=colours[t],
                                   lw=1.5 if t == T - 1 else 0.8))
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.axis("off")


def plot_reconstructions(images, l, decoded, path, *, sides, clean=None, labels=None):
    """One row per image: the input with its glimpses, the clean digit (if given), then the
    VAE's decoded mean image after glimpse 1..T. images (N, 1, H, W), l (N, T, 2),
    decoded (N, T, 1, 28, 28), clean (N, 1, 28, 28)."""
    plt = pyplot()
    N, T = decoded.shape[:2]
    lead = 1 if clean is None else 2
    fig, axes = plt.subplots(N, lead + T, figsize=(1.3 * (lead + T), 1.4 * N), squeeze=False)
    for i in range(N):
        _draw_glimpses(axes[i, 0], images[i], l[i], sides)
        if labels is not None:
            axes[i, 0].set_title(f"input, y={int(labels[i])}", fontsize=7)
        if clean is not None:
            axes[i, 1].imshow(clean[i, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, 1].set_title("clean", fontsize=7)
            axes[i, 1].axis("off")
        for t in range(T):
            ax = axes[i, lead + t]
            ax.imshow(decoded[i, t, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            if i == 0:
                ax.set_title(f"after t={t + 1}", fontsize=7)
    fig.tight_layout()
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


def animate_glimpses(images, l, path, *, sides, labels=None, preds=None):
    """An animated GIF of the glimpse path on images (N, 1, H, W), one frame per glimpse."""
    plt = pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    N, T = l.shape[:2]
    cols = int(np.ceil(np.sqrt(N)))
    rows = int(np.ceil(N / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)

    def frame(t):
        for i, ax in enumerate(axes.flat):
            ax.clear()
            ax.axis("off")
            if i < N:
                _draw_glimpses(ax, images[i], l[i], sides, upto=t + 1)
                bits = [f"t={t + 1}"]
                if labels is not None:
                    bits.append(f"y={int(labels[i])}")
                if preds is not None:
                    bits.append(f"pred={int(preds[i, t])}")
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


def draw_report(report_dir, first, result, reliability, *, sides, run_name):
    """The report's figures from the first test images `first` = (x, x_clean, y, l, preds (N, T),
    decoded (N, T, 1, 28, 28)), the per-glimpse `result` of the explanation and its
    `reliability` bins."""
    x, x_clean, y, l, preds, decoded = first
    cluttered = x.shape[-1] != x_clean.shape[-1] or not torch.equal(x, x_clean)
    plot_reconstructions(x, l, decoded, os.path.join(report_dir, "reconstructions.png"), sides=sides,
                         clean=x_clean if cluttered else None, labels=y)
    plot_curves({"per-pixel MSE to the clean digit": {"MSE": (result["recon_mse"], result["recon_mse_se"])},
                 "per-pixel BCE to the clean digit": {"BCE": (result["recon_bce"], result["recon_bce_se"])}},
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
    plot_glimpses(x, l, os.path.join(report_dir, "glimpses.png"), sides=sides, labels=y, preds=preds[:, -1])
    animate_glimpses(x, l, os.path.join(report_dir, "glimpses.gif"), sides=sides, labels=y, preds=preds)
