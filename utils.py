"""Seeding, RNG state, atomic checkpoint I/O, meters and plots."""

import os
import random
import tempfile

import numpy as np
import torch

from arguments import ConfigError


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


def atomic_save(obj, path):
    """torch.save to a temp file in the same folder, then os.replace: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path, device):
    """torch.load with map_location; a missing or unreadable file is a ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {first})")


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def glimpse_boxes(l, *, image_size, sides):
    """Top-left corners (T, K, 2) in pixels of every retina patch for locations l (T, 2).

    Uses the retina's own rule: centre = floor((l + 1) / 2 * W), top-left = centre - S // 2.
    """
    centre = torch.floor((l + 1) * (image_size / 2.0))  # (T, 2)
    return torch.stack([centre - side // 2 for side in sides], 1)  # (T, K, 2)


def plot_glimpses(images, l, path, *, sides, labels=None, preds=None, max_images=9):
    """Save a grid of images (N, 1, H, W) with their glimpse path l (N, T, 2) and patch boxes."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    n = min(max_images, images.shape[0])
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    size = images.shape[-1]
    T = l.shape[1]
    colours = plt.cm.viridis(np.linspace(0, 1, T))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        corners = glimpse_boxes(l[i].cpu(), image_size=size, sides=sides)
        centres = torch.floor((l[i].cpu() + 1) * (size / 2.0)).numpy()
        ax.plot(centres[:, 0], centres[:, 1], "-", color="white", lw=0.8, alpha=0.7)
        for t in range(T):
            for k, side in enumerate(sides):
                x0, y0 = corners[t, k].tolist()
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), side, side, fill=False,
                                       edgecolor=colours[t], lw=1.0))
        title = []
        if labels is not None:
            title.append(f"y={int(labels[i])}")
        if preds is not None:
            title.append(f"pred={int(preds[i])}")
        ax.set_title(" ".join(title), fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
