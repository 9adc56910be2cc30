"""Copy a finished run into models/<run>/ for shipping: the best RAM checkpoint and its VAE
without optimizer and RNG state (they only matter to continue training: the files shrink to
a third), the run's config.json and its report's metrics.json as report_metrics.json.

    python experiments/ship.py RUN [RUN ...]     # from ckpt/RUN and report/RUN

The shipped RAM loads with `python main.py --is_train=False --ckpt_dir models --run_name RUN`
(plus the run's model flags when they differ from the defaults; see models/README.md).
"""

import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import atomic_save  # noqa: E402


def ship(run, ckpt_dir=os.path.join(ROOT, "ckpt"), report_dir=os.path.join(ROOT, "report"),
         models_dir=os.path.join(ROOT, "models")):
    out = os.path.join(models_dir, run)
    os.makedirs(out, exist_ok=True)
    for name, drop in (("best.pt", ("optimizer", "scheduler", "rng")), ("vae.pt", ("optimizer", "rng"))):
        state = torch.load(os.path.join(ckpt_dir, run, name), map_location="cpu", weights_only=True)
        atomic_save({k: (None if k in drop else v) for k, v in state.items()}, os.path.join(out, name))
    shutil.copyfile(os.path.join(ckpt_dir, run, "config.json"), os.path.join(out, "config.json"))
    shutil.copyfile(os.path.join(report_dir, run, "metrics.json"), os.path.join(out, "report_metrics.json"))
    print(f"[*] shipped {run} in {out}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python experiments/ship.py RUN [RUN ...]")
    for run in sys.argv[1:]:
        ship(run)
