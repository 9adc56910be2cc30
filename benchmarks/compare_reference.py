"""Training and inference speed (images/s) of this RAM next to the reference PyTorch RAM.

    git clone https://github.com/kevinzakka/recurrent-visual-attention /tmp/ref
    python benchmarks/compare_reference.py --reference /tmp/ref
    python benchmarks/compare_reference.py --reference /tmp/ref --images 512 --repeats 1 --threads 1

Both sides train one epoch and run one inference pass over the same N MNIST training
images ([0, 1] floats; the reference normally standardises them, which does not change its
speed), with the same retina, glimpse count, hidden sizes, std, batch size and M = 1:

  ours       per batch of our DataLoader: model.rollout + losses.hybrid_loss + backward +
             Adam step (what benchmarks/throughput.py times); inference: no_grad rollouts.
  reference  its own Trainer.train_one_epoch(epoch) and Trainer.validate(epoch), unmodified,
             over DataLoaders of a TensorDataset with the SubsetRandomSampler its
             data_loader.py uses (without its per-image PIL decoding and worker processes).

Its code is not part of this project: --reference names a checkout of it. Each side runs in
its own `python` process (the two projects both have model.py, modules.py, utils.py, ...),
alternating ours / reference --repeats times per config. Printed per config: min / median /
max images/s of each side, then ratio_train= and ratio_infer= (ours median / reference
median) as name=value lines, and at the end one markdown table row per config.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_URL = "https://github.com/kevinzakka/recurrent-visual-attention"
# The reference's defaults. Its glimpse network outputs glimpse_hidden + loc_hidden features
# into a core of hidden_size, so the three are fixed together.
GLIMPSE_HIDDEN, LOC_HIDDEN, HIDDEN_SIZE = 128, 128, 256
STD, LR, SEED = 0.05, 3e-4, 1
WARMUP_BATCHES = 2  # untimed training and inference batches on each side first


def parse(argv):
    p = argparse.ArgumentParser(prog="compare_reference.py", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", default=None, metavar="PATH",
                   help=f"checkout of {REFERENCE_URL} (skipped without one)")
    p.add_argument("--configs", nargs="+", default=["8,1,1", "8,3,2"], metavar="G,K,S",
                   help="retinas to compare: patch side g, scales k, scale factor s")
    p.add_argument("--images", type=int, default=10000, help="MNIST training images N per epoch")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per side and config")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads of each side")
    p.add_argument("--batch_size", type=int, default=128, help="images per batch")
    p.add_argument("--num_glimpses", type=int, default=6, help="glimpses T per image")
    p.add_argument("--data_source", default="embedded", choices=["embedded", "torchvision"],
                   help="where our data_loader.load_mnist reads MNIST from")
    p.add_argument("--data_dir", default=os.path.join(ROOT, "data"), help="torchvision MNIST files")
    # One side of one timing, run in a child process by the parent.
    p.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("images", "repeats", "threads", "batch_size", "num_glimpses"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    try:
        args.retinas = [retina(text) for text in args.configs]
    except ValueError:
        p.error(f"--configs takes G,K,S triples of positive integers such as 8,3,2, got {args.configs}")
    return args


def retina(text):
    """'8,3,2' -> (patch side g, scales k, scale factor s)."""
    g, k, s = (int(v) for v in text.split(","))
    if min(g, k, s) <= 0:
        raise ValueError(text)
    return g, k, s


def label(g, k, s):
    return f"{g}x{g}, 1 scale" if k == 1 else f"{g}x{g}, {k} scales x{s}"


def shared_flags(args, g, k, s):
    """The settings both projects' parsers take under the same names."""
    return [f"--patch_size={g}", f"--num_patches={k}", f"--glimpse_scale={s}",
            f"--num_glimpses={args.num_glimpses}", f"--glimpse_hidden={GLIMPSE_HIDDEN}",
            f"--loc_hidden={LOC_HIDDEN}", f"--hidden_size={HIDDEN_SIZE}", f"--std={STD}", "--M=1",
            f"--batch_size={args.batch_size}", f"--init_lr={LR}", f"--random_seed={SEED}"]


def our_config(args, g, k, s):
    from arguments import build_parser, get_config

    parser = build_parser()
    parser.prog = "compare_reference.py"
    # The reference's location network has a hidden layer of hidden_size // 2 units: match it.
    return get_config(shared_flags(args, g, k, s) + [
        f"--locator_hidden={HIDDEN_SIZE // 2}", f"--data_source={args.data_source}",
        f"--data_dir={args.data_dir}"], parser)


# ---------------------------------------------------------------------------------------
# One side, in a child process: prints train_images_per_s=, infer_images_per_s=, params=
# ---------------------------------------------------------------------------------------

def time_ours(args, data):
    import torch

    sys.path.insert(0, ROOT)
    from data_loader import ImageSet, get_data
    from losses import hybrid_loss, loss_settings
    from model import RecurrentAttention

    config = our_config(args, *retina(args.config))
    images = ImageSet(data["x"], None, data["y"], num_classes=10)
    loaders = get_data(config, sets={"train": images, "valid": images}).loaders
    model = RecurrentAttention.from_config(config, in_channels=1, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.init_lr)
    settings = loss_settings(config)
    T = config.num_glimpses

    def train(limit=None):
        model.train()
        for i, (x, _, y) in enumerate(loaders["train"]):
            if i == limit:
                break
            out = model.rollout(x, T)
            loss = hybrid_loss(out, y, **settings)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def infer(limit=None):
        model.eval()
        correct = 0
        for i, (x, _, y) in enumerate(loaders["valid"]):
            if i == limit:
                break
            correct += (model.rollout(x, T).logits[:, -1].argmax(-1) == y).sum().item()
        return correct

    train(WARMUP_BATCHES)
    infer(WARMUP_BATCHES)
    return seconds(train), seconds(infer), model


def time_reference(args, data, workdir):
    from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

    # Only the reference's files may answer `import model`, `import utils`, ...
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
    sys.path.insert(0, os.path.abspath(args.reference))
    # It logs through tensorboard_logger (unmaintained, not installed): a no-op stand-in.
    stub = types.ModuleType("tensorboard_logger")
    stub.configure = stub.log_value = lambda *a, **k: None
    sys.modules["tensorboard_logger"] = stub
    import config as ref_config
    import trainer as ref_trainer

    for name in ("config", "trainer", "model", "modules", "utils"):
        origin = os.path.abspath(sys.modules[name].__file__)
        if os.path.dirname(origin) != os.path.abspath(args.reference):
            raise RuntimeError(f"reference module {name} was loaded from {origin}")

    g, k, s = retina(args.config)
    # Its get_config parses sys.argv with parse_known_args, so check that every flag took.
    sys.argv = ["config.py", *shared_flags(args, g, k, s), "--is_train=True", "--use_gpu=False",
                "--use_tensorboard=False", "--plot_freq=1000000",  # no glimpse pickles: epoch 1 % 1e6 != 0
                f"--ckpt_dir={workdir}/ckpt", f"--logs_dir={workdir}/logs/"]
    config, unparsed = ref_config.get_config()
    expected = {"patch_size": g, "num_patches": k, "glimpse_scale": s, "num_glimpses": args.num_glimpses,
                "glimpse_hidden": GLIMPSE_HIDDEN, "loc_hidden": LOC_HIDDEN, "hidden_size": HIDDEN_SIZE,
                "std": STD, "M": 1, "batch_size": args.batch_size, "use_gpu": False, "plot_freq": 1000000}
    wrong = {key: getattr(config, key, None) for key, value in expected.items() if getattr(config, key, None) != value}
    if unparsed or wrong:
        raise RuntimeError(f"the reference's config did not take our flags: unparsed {unparsed}, wrong {wrong}")

    dataset = TensorDataset(data["x"].float().div_(255), data["y"])  # (N, 1, 28, 28), (N,)
    n = len(dataset)

    def loader(count):
        return DataLoader(dataset, batch_size=args.batch_size, sampler=SubsetRandomSampler(list(range(count))))

    trainer = ref_trainer.Trainer(config, (loader(n), loader(n)))
    timed_loaders = trainer.train_loader, trainer.valid_loader
    warm = min(n, WARMUP_BATCHES * args.batch_size)
    trainer.train_loader, trainer.valid_loader = loader(warm), loader(warm)
    trainer.train_one_epoch(1)
    trainer.validate(1)
    trainer.train_loader, trainer.valid_loader = timed_loaders
    return (seconds(lambda: trainer.train_one_epoch(1)), seconds(lambda: trainer.validate(1)),
            trainer.model)


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_side(args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    data = torch.load(args.data)
    if args.side == "ours":
        train_s, infer_s, model = time_ours(args, data)
    else:
        train_s, infer_s, model = time_reference(args, data, os.path.dirname(args.data))
    n = len(data["y"])
    print(f"params={sum(p.numel() for p in model.parameters())}")
    print(f"train_images_per_s={n / train_s:.1f}")
    print(f"infer_images_per_s={n / infer_s:.1f}")


# ---------------------------------------------------------------------------------------
# The parent: data once, children alternating, the summary
# ---------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def reference_commit(path):
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


class SideFailed(Exception):
    pass


def child(args, side, config_text, data_path):
    """Run one side once in a fresh process; return its name=value lines as a dict."""
    argv = [sys.executable, os.path.abspath(__file__), "--side", side, "--config", config_text,
            "--data", data_path, "--threads", str(args.threads), "--batch_size", str(args.batch_size),
            "--num_glimpses", str(args.num_glimpses), "--data_source", args.data_source,
            "--data_dir", args.data_dir]
    if side == "reference":
        argv += ["--reference", args.reference]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TQDM_DISABLE="1")  # the reference's progress bar only clutters its stderr
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=os.path.dirname(data_path), env=env)
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    if proc.returncode != 0 or not {"train_images_per_s", "infer_images_per_s"} <= set(values):
        lines = [line.strip() for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
        tail = " | ".join(lines[-3:])[-600:] or "(no stderr)"
        raise SideFailed(f"error: the {side} side failed on config {config_text} "
                         f"(exit {proc.returncode}): {tail}")
    return values


def spread(values):
    return min(values), statistics.median(values), max(values)


def compare(args):
    import torch

    sys.path.insert(0, ROOT)
    from data_loader import load_mnist

    for g, k, s in args.retinas:
        our_config(args, g, k, s)  # a bad retina exits 2 here, before anything runs
    x, y = load_mnist(our_config(args, *args.retinas[0]))["train"]
    if args.images > len(y):
        sys.exit(f"compare_reference.py: error: --images is at most {len(y)}, got {args.images}")
    print(f"date={datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"torch={torch.__version__}")
    print(f"threads={args.threads}")
    print(f"cpu={cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"python={platform.python_version()}")
    print(f"reference={os.path.abspath(args.reference)} (commit {reference_commit(args.reference)})")
    print(f"setup=N {args.images} MNIST train images, batch {args.batch_size}, T={args.num_glimpses}, "
          f"hidden {GLIMPSE_HIDDEN}+{LOC_HIDDEN}->{HIDDEN_SIZE}, std {STD}, M=1, {args.repeats} repeats, "
          f"{WARMUP_BATCHES} warm-up batches, CPU")
    rows = []
    with tempfile.TemporaryDirectory(prefix="compare_reference_") as workdir:
        data_path = os.path.join(workdir, "images.pt")
        torch.save({"x": torch.from_numpy(x[:args.images, None].copy()),  # (N, 1, 28, 28) uint8
                    "y": torch.from_numpy(y[:args.images].copy())}, data_path)  # (N,) int64
        for g, k, s in args.retinas:
            text = f"{g},{k},{s}"
            runs = {"ours": [], "reference": []}
            for _ in range(args.repeats):
                for side in runs:
                    runs[side].append(child(args, side, text, data_path))
            print(f"config={label(g, k, s)}")
            medians = {}
            for side, results in runs.items():
                print(f"{side}_params={results[0]['params']}")
                for kind in ("train", "infer"):
                    lo, mid, hi = spread([float(r[f"{kind}_images_per_s"]) for r in results])
                    medians[side, kind] = mid
                    print(f"{side}_{kind}_images_per_s_min={lo:.0f}")
                    print(f"{side}_{kind}_images_per_s_median={mid:.0f}")
                    print(f"{side}_{kind}_images_per_s_max={hi:.0f}")
            ratio = {kind: medians["ours", kind] / medians["reference", kind] for kind in ("train", "infer")}
            print(f"ratio_train={ratio['train']:.2f}")
            print(f"ratio_infer={ratio['infer']:.2f}")
            rows.append(f"| {label(g, k, s)} | {medians['ours', 'train']:.0f} | {medians['reference', 'train']:.0f} "
                        f"| {ratio['train']:.1f}x | {medians['ours', 'infer']:.0f} "
                        f"| {medians['reference', 'infer']:.0f} | {ratio['infer']:.1f}x |")
    print()
    print(f"Images/s, median of {args.repeats}; torch {torch.__version__}, {args.threads} threads, {cpu_model()}, "
          f"N={args.images}, batch {args.batch_size}, T={args.num_glimpses}:")
    print()
    print("| retina | ours train | reference train | ratio | ours inference | reference inference | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def main(argv=None):
    args = parse(argv)
    if args.side:
        run_side(args)
        return 0
    ref = args.reference
    needed = ("model.py", "modules.py", "trainer.py", "config.py", "utils.py")
    if not ref or not all(os.path.isfile(os.path.join(ref, f)) for f in needed):
        where = "no --reference given" if not ref else f"{ref} lacks one of {', '.join(needed)}"
        print(f"skipped: {where}; get the reference with `git clone {REFERENCE_URL} PATH` "
              f"and pass --reference PATH")
        return 0
    try:
        compare(args)
    except SideFailed as err:
        print(err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
