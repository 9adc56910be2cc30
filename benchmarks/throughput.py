"""Training and inference throughput (images/s) of the RAM for one config.

    python benchmarks/throughput.py                                  # paper's MNIST setting
    python benchmarks/throughput.py --num_patches 3 --glimpse_scale 2
    python benchmarks/throughput.py --data_type folder --image_size 48 64 --in_channels 3

Every flag of main.py is accepted. A training step is rollout + hybrid loss + backward +
Adam step on one MNIST-sized batch; inference is one rollout without gradients. Each
figure is the median of --repeats timings of --steps steps. The last two lines are
`train_images_per_s=<n>` and `infer_images_per_s=<n>`.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from arguments import build_parser, get_config, image_side  # noqa: E402
from losses import hybrid_loss, loss_settings  # noqa: E402
from model import RecurrentAttention  # noqa: E402
from utils import precision_context  # noqa: E402


def parse(argv):
    parser = build_parser()
    parser.prog = "throughput.py"
    b = parser.add_argument_group("benchmark")
    b.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    b.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    b.add_argument("--repeats", type=int, default=7, help="timed repeats (the median is reported)")
    b.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    b.add_argument("--in_channels", type=int, default=1, help="image channels (3 for RGB folders)")
    config = get_config(argv, parser)
    if config.data_type == "folder" and config.image_size is None:
        parser.error("--data_type folder needs --image_size H W here (the images are synthetic)")
    return config


def timed(fn, steps, repeats, warmup, sync):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    config = parse(argv)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.random_seed)
    device = torch.device("cuda" if config.use_gpu else "cpu")
    sync = torch.cuda.synchronize if config.use_gpu else (lambda: None)
    H, W = config.image_size if config.data_type == "folder" else (image_side(config),) * 2
    # Synthetic input of the dataset's canvas size: speed does not depend on the pixels.
    model = RecurrentAttention.from_config(config, in_channels=config.in_channels, num_classes=10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.init_lr)
    x = torch.rand(config.batch_size, config.in_channels, H, W, device=device)
    y = torch.randint(0, 10, (config.batch_size,), device=device)

    def train_step():
        with precision_context(config.precision, device):
            out = model.rollout(x, config.num_glimpses)
            loss = hybrid_loss(out, y, **loss_settings(config))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer_step():
        with precision_context(config.precision, device):
            model.rollout(x, config.num_glimpses)

    images = config.batch_size * config.steps
    model.train()
    train = images / timed(train_step, config.steps, config.repeats, config.warmup, sync)
    model.eval()
    infer = images / timed(infer_step, config.steps, config.repeats, config.warmup, sync)
    print(f"config: batch {config.batch_size}, threads {config.threads}, T={config.num_glimpses}, "
          f"{config.patch_size}x{config.patch_size}, k={config.num_patches}, s={config.glimpse_scale}, "
          f"{H}x{W}x{config.in_channels}, {config.precision}, torch {torch.__version__}, device {device}")
    print(f"train_images_per_s={train:.0f}")
    print(f"infer_images_per_s={infer:.0f}")


if __name__ == "__main__":
    main()
