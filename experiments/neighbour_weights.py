"""How the neighbour imagination's weights set EIG/IG and the EIG gap, read by the probes.

    python experiments/neighbour_weights.py -- --ckpt_dir models --run_name paper_mnist_std0.1-0.03_s3 \\
        --random_seed 3 --std_final 0.03

takes main.py's flags of a trained run (its test command), and on the first --images images
of --split (valid by default: weights are chosen there, never on the test set) computes what
the report's probe columns hold (`information.expected_information_gain` with the linear
probes, --probe_fit, the neighbour imagination, --eig_estimator) once per weighting of the
neighbours: uniform, belief (`information.belief_weights`) and tilted
(`information.tilted_weights`) at each of --ridges. Per weighting it prints EIG/IG and the
gap per glimpse (EIG/IG in brackets where IG <= 0.05 nats) and whether the issue's targets
hold: EIG/IG within 0.8-1.2 at every glimpse with IG > 0.05 nats and the gap under 0.05.
Every weighting sees the same rollouts (the same seed).
"""

import argparse
import dataclasses
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from arguments import ConfigError, exit_on_config_error, probed_run_config  # noqa: E402
from data_loader import get_data  # noqa: E402
from explain import best_with_vae, glimpse_probes, imagination_settings, training_states  # noqa: E402
from information import TILT_RIDGE, entropy, expected_information_gain, probe_logits  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import seed_everything  # noqa: E402

INFORMATIVE = 0.05  # nats: EIG/IG is judged where IG is above this


def weightings(bank, ridges):
    """(name, bank) per weighting: uniform (no beliefs), belief, tilted at each ridge."""
    yield "uniform", dataclasses.replace(bank, beliefs=None)
    yield "belief", dataclasses.replace(bank, weighting="belief")
    for ridge in ridges:
        yield f"tilted {ridge:g}", dataclasses.replace(bank, weighting="tilted", ridge=ridge)


@torch.no_grad()
def probe_columns(config, model, vae, x, probes, imagination):
    """Mean over the images x of the probes' IG, EIG and gap per glimpse: three lists of T."""
    sums, n = None, 0
    for chunk in x.split(config.batch_size):
        out = model.rollout(chunk, config.num_glimpses)
        expected = expected_information_gain(model, vae, out, chunk, samples=config.eig_samples, probes=probes,
                                             imagination=imagination, estimator=config.eig_estimator)
        beliefs = torch.stack([probe_logits(probes, t, out.h[:, t]).softmax(-1) for t in range(out.h.shape[1])], 1)
        prior = torch.full_like(beliefs[:, :1], 1 / beliefs.shape[-1])
        ig = -entropy(beliefs).diff(dim=1, prepend=entropy(prior))  # (B, T): H_{t-1} - H_t
        batch = [v.sum(0) for v in (ig, expected.probe_eig, expected.probe_gap)]
        sums = batch if sums is None else [a + b for a, b in zip(sums, batch)]
        n += chunk.shape[0]
    return [(v / n).tolist() for v in sums]


def verdict(ig, eig, gap):
    """The targets: EIG/IG in 0.8-1.2 and gap < 0.05 at every glimpse with IG > 0.05."""
    judged = [t for t, v in enumerate(ig) if v > INFORMATIVE]
    ratio_ok = all(0.8 <= eig[t] / ig[t] <= 1.2 for t in judged)
    gap_ok = all(gap[t] < 0.05 for t in judged)
    return f"ratio {'met' if ratio_ok else 'missed'}, gap {'met' if gap_ok else 'missed'}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="images of --split (the first, in order)")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--ridges", type=float, nargs="+", default=[0.3, 0.1, TILT_RIDGE, 0.03, 0.01],
                        help="the tilted weights' ridges to compare")
    parser.add_argument("main_args", nargs=argparse.REMAINDER, help="-- then main.py's flags of the run")
    args = parser.parse_args(argv)
    config = probed_run_config(args.main_args, args.images)
    if not all(r > 0 for r in args.ridges):
        raise ConfigError(f"--ridges must be positive, got {' '.join(map(str, args.ridges))}")
    if config.imagine != "neighbours":
        raise ConfigError(f"the weights are the neighbour imagination's: --imagine {config.imagine} has none")
    data = get_data(config)
    trainer = Trainer(config, data)
    _, vae = best_with_vae(config, data, trainer)
    model, device = trainer.model.eval(), trainer.device
    train = data.loaders["train"].dataset
    states = training_states(config, model, train, device, images=max(config.probe_images, config.imagine_bank))
    probes = glimpse_probes(model, states, device, images=config.probe_images, fit=config.probe_fit)
    weighted = argparse.Namespace(**{**vars(config), "imagine_weights": "belief"})  # a bank holding beliefs
    imagination, _ = imagination_settings(weighted, model, vae, data, device, states=states, probes=probes)
    split = data.loaders[args.split].dataset
    x = split[torch.arange(min(args.images, len(split)))][0].to(device)
    print(f"probe EIG/IG and gap per glimpse t = 1..{config.num_glimpses}, {len(x)} {args.split} images, "
          f"S = {config.eig_samples}, {config.eig_estimator}, probes fitted to {config.probe_fit}; "
          f"(EIG/IG) where IG <= {INFORMATIVE}")
    for name, bank in weightings(imagination.bank, args.ridges):
        seed_everything(config.random_seed)
        ig, eig, gap = probe_columns(config, model, vae, x, probes, dataclasses.replace(imagination, bank=bank))
        if name == "uniform":
            print(f"{'IG':14s} " + " ".join(f"{v:6.3f}" for v in ig))
        ratio = " ".join(f"{e / i:6.2f}" if i > INFORMATIVE else f"({e / i:4.2f})" for e, i in zip(eig, ig))
        print(f"{name:14s} EIG/IG {ratio}")
        print(f"{'':14s} gap    " + " ".join(f"{v:6.3f}" for v in gap) + f"   {verdict(ig, eig, gap)}")


if __name__ == "__main__":
    exit_on_config_error(main, "neighbour_weights.py")
