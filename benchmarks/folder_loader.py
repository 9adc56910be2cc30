"""How fast an image folder is read, against how fast the model trains on it (images/s).

    python benchmarks/folder_loader.py                       # 3 x 1000 synthetic 48x64 RGB shapes
    python benchmarks/folder_loader.py --data_dir PATH       # your own folder (not written to)

Prints, each the median of --repeats: decoding the folder with no cache (Pillow), reading
the decoded uint8 cache, and one epoch of the training DataLoader (uint8 -> float batches);
then run benchmarks/throughput.py with the printed flags for the model's training images/s.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import torch  # noqa: E402

import folders  # noqa: E402
from arguments import get_config  # noqa: E402
from data_loader import get_data  # noqa: E402
from make_shapes import make_shapes  # noqa: E402


def median_rate(fn, n, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times), n / max(times), n / min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=None, help="image folder (default: synthetic shapes in a temp folder)")
    p.add_argument("--per_class", type=int, default=1000, help="synthetic images per class")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or make_shapes(os.path.join(tmp, "shapes"), per_class=args.per_class)
        config = get_config(["--data_type=folder", f"--data_dir={data}", f"--cache_dir={tmp}/cache",
                             f"--ckpt_dir={tmp}/ckpt"])
        _, _, files = folders.scan(data)
        paths = sorted(p for by_class in files.values() for ps in by_class.values() for p in ps)
        decode = median_rate(lambda: folders.decode(data, paths, size=None), len(paths), args.repeats)
        built = get_data(config)  # decodes once more and writes the cache
        cached = median_rate(lambda: folders.decoded(config, paths, None), len(paths), args.repeats)
        train = built.loaders["train"]
        n = len(train.dataset)
        epoch = median_rate(lambda: [None for _ in train], n, args.repeats)
    C, (H, W) = built.in_channels, built.image_size
    for name, (median, low, high) in (("decode (no cache)", decode), ("read the cache", cached),
                                      ("training DataLoader, one epoch", epoch)):
        print(f"{name}: {median:,.0f} images/s (min {low:,.0f}, max {high:,.0f})")
    print(f"model: python benchmarks/throughput.py --data_type folder --image_size {H} {W} --in_channels {C} "
          f"--threads {args.threads}")


if __name__ == "__main__":
    main()
