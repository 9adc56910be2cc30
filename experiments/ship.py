"""Copy a finished run into models/<run>/ for shipping: the best RAM checkpoint and its VAE
without optimizer and RNG state (they only matter to continue training: the files shrink to
a third), the run's config.json and its report's metrics.json as report_metrics.json.

    python experiments/ship.py RUN [RUN ...]     # from ckpt/RUN and report/RUN
    python experiments/ship.py --vae_fp16 RUN    # the VAE's weights stored in float16

--vae_fp16 halves the VAE file, most of a large canvas's run (its decoder has one output per
canvas pixel: 23 MB of float32 at 100x100). It is loaded back into the float32 model, so
only the stored weights are rounded (about 3 significant digits); the RAM is never halved.

The shipped RAM loads with `python main.py --is_train=False --ckpt_dir models --run_name RUN`
(plus the run's model flags when they differ from the defaults; see models/README.md).
"""

import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from arguments import ConfigError, exit_on_config_error  # noqa: E402
from utils import atomic_save  # noqa: E402


def ship(run, ckpt_dir=os.path.join(ROOT, "ckpt"), report_dir=os.path.join(ROOT, "report"),
         models_dir=os.path.join(ROOT, "models"), vae_fp16=False):
    """Copy run into models_dir/run (the VAE's floating-point weights in float16 with
    vae_fp16); a missing input or an already shipped run is a ConfigError, raised before
    anything is written."""
    out = os.path.join(models_dir, run)
    sources = [os.path.join(ckpt_dir, run, name) for name in ("best.pt", "vae.pt", "config.json")]
    sources.append(os.path.join(report_dir, run, "metrics.json"))
    if os.path.exists(out):
        raise ConfigError(f"{out} exists already: remove it first to ship {run} again")
    missing = [path for path in sources if not os.path.isfile(path)]
    if missing:
        raise ConfigError(f"cannot ship {run}: no {missing[0]} (train it, then test it with --is_train=False)")
    os.makedirs(out)
    for name, drop in (("best.pt", ("optimizer", "scheduler", "rng")), ("vae.pt", ("optimizer", "rng"))):
        state = torch.load(os.path.join(ckpt_dir, run, name), map_location="cpu", weights_only=True)
        state = {k: (None if k in drop else v) for k, v in state.items()}
        if name == "vae.pt" and vae_fp16:
            state["vae"] = {k: v.half() if v.is_floating_point() else v for k, v in state["vae"].items()}
        atomic_save(state, os.path.join(out, name))
    shutil.copyfile(os.path.join(ckpt_dir, run, "config.json"), os.path.join(out, "config.json"))
    shutil.copyfile(os.path.join(report_dir, run, "metrics.json"), os.path.join(out, "report_metrics.json"))
    print(f"[*] shipped {run} in {out}")


def main(argv):
    vae_fp16 = "--vae_fp16" in argv
    runs = [arg for arg in argv if arg != "--vae_fp16"]
    if not runs or any(run.startswith("-") for run in runs):
        raise ConfigError("usage: python experiments/ship.py [--vae_fp16] RUN [RUN ...]")
    for run in runs:
        ship(run, vae_fp16=vae_fp16)


if __name__ == "__main__":
    exit_on_config_error(lambda: main(sys.argv[1:]), "ship.py")
