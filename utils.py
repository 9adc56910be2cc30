"""Seeding, RNG state, atomic checkpoint I/O, meters and plots."""

import os
import random
import tempfile

import numpy as np
import torch

from arguments import ConfigError
from modules import pixel_centre


def seed_everything(seed):
    """The one seeding block: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(*generators):
    """Every RNG state a resumed run needs, as plain tensors/ints (loadable with weights_only)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state, *generators):
    """Inverse of `rng_state`."""
    version, items, gauss = state["python"]
    random.setstate((version, tuple(items), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)


def atomic_write(path, write):
    """write(file object) into a temp file in path's folder, then os.replace: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """torch.save through `atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def first_line(err, limit=200):
    """The first line of an exception's message, so that an error stays one line."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


def load_checkpoint(path, device, *, kind, version):
    """torch.load with map_location of a dict saved with {"format": version}; a missing,
    unreadable or foreign file is a ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise ConfigError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {first_line(err)})")
    if not isinstance(state, dict) or state.get("format") != version:
        raise ConfigError(f"checkpoint {path} is not a {kind} checkpoint of format {version}")
    return state


def check_matches(what, saved, wanted):
    """Raise a ConfigError naming every key of `wanted` whose value differs in `saved`."""
    differ = [f"{k}={saved.get(k)!r} in the checkpoint but {v!r} here"
              for k, v in wanted.items() if saved.get(k) != v]
    if differ:
        raise ConfigError(f"{what}: " + "; ".join(differ))


class AverageMeter:
    """Running mean of a scalar over a number of items."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, value, n=1):
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)


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


def compare_runs(report_dir, runs):
    """Overlay the per-glimpse curves of the reports of several runs in one figure,
    report_dir/compare_<A>_vs_<B>...png, and print them; returns the figure's path."""
    import json

    reports = {}
    for run in runs:
        path = os.path.join(report_dir, run, "metrics.json")
        if not os.path.isfile(path):
            raise ConfigError(f"no report for run {run} at {path}: write it with --is_train=False first")
        try:
            with open(path) as f:
                reports[run] = json.load(f)["per_glimpse"]
            for key in ("accuracy", "ig", "ig_se", "eig", "eig_se", "recon_mse", "recon_mse_se"):
                reports[run][key] = [float(v) for v in reports[run][key]]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"report {path} is corrupt or incomplete ({type(err).__name__}: {err})")
    panels = {
        "accuracy after glimpse t": {run: (g["accuracy"], None) for run, g in reports.items()},
        "realised information gain IG_t": {run: (g["ig"], g["ig_se"]) for run, g in reports.items()},
        "expected information gain EIG_t": {run: (g["eig"], g["eig_se"]) for run, g in reports.items()},
        "VAE reconstruction MSE": {run: (g["recon_mse"], g["recon_mse_se"]) for run, g in reports.items()},
    }
    out = os.path.join(report_dir, "compare_" + "_vs_".join(runs) + ".png")
    plot_curves(panels, out)
    for run, g in reports.items():
        print(run)
        print("   t  accuracy      IG     EIG  recon MSE")
        for t in range(len(g["accuracy"])):
            print(f"  {t + 1:>2}  {g['accuracy'][t]:>8.2%}  {g['ig'][t]:.4f}  {g['eig'][t]:.4f}  "
                  f"{g['recon_mse'][t]:.5f}")
    print(f"[*] comparison in {out}")
    return out
