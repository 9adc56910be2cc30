"""How far successive linear probes are from a martingale, with each --probe_fit.

    python experiments/probe_martingale.py -- --ckpt_dir models --run_name paper_mnist_std0.1-0.03_s3 \\
        --random_seed 3

takes main.py's flags of a trained run (its test command), fits the probes of every glimpse
on the first --probe_images training states (`explain.glimpse_probes`), once to the labels and
once distilled, and prints per glimpse t = 2..T: for each of --images test images, the S =
--eig_samples training images whose h after t - 1 glimpses is nearest (from the first
--imagine_bank; the neighbour imagination takes them by the VAE's input, h and, for an
LSTM, c), then the jackknifed KL (`information.eig_from_samples`) of the mean of the t
probe's beliefs on their states after t glimpses to the mean of the t - 1 probe's beliefs on
their states after t - 1: how much the two probes disagree on the same images, averaged over
the test images. It is 0 for beliefs that are a martingale; the probes' EIG gap
(`information.expected_information_gain`) contains it whatever the imagination.
"""

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from arguments import PROBE_FITS, exit_on_config_error, probed_run_config  # noqa: E402
from data_loader import get_data  # noqa: E402
from explain import States, glimpse_probes, training_states  # noqa: E402
from information import eig_from_samples, probe_logits  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import seed_everything  # noqa: E402


def disagreement(probes, bank, test, samples):
    """Per glimpse t = 2..T, the mean over test states of KL(mean_s p_t^s || mean_s p_{t-1}^s)
    over each one's `samples` nearest bank states after t - 1 glimpses."""
    out = []
    for t in range(1, bank.h.shape[1]):
        near = torch.cdist(test.h[:, t - 1], bank.h[:, t - 1]).topk(samples, dim=1, largest=False).indices  # (N, S)
        before = probe_logits(probes, t - 1, bank.h[near, t - 1]).softmax(-1).mean(1)  # (N, C)
        after = probe_logits(probes, t, bank.h[near, t]).softmax(-1).transpose(0, 1)  # (S, N, C)
        out.append(eig_from_samples(before, after)[1].mean().item())  # the jackknifed KL of the mean
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000, help="test images (the first, in order)")
    parser.add_argument("main_args", nargs=argparse.REMAINDER, help="-- then main.py's flags of the run")
    args = parser.parse_args(argv)
    config = probed_run_config(args.main_args, args.images)
    data = get_data(config)
    trainer = Trainer(config, data)
    trainer.load("best.pt")
    seed_everything(config.random_seed)
    model, device = trainer.model, trainer.device
    bank = training_states(config, model, data.loaders["train"].dataset, device,
                           images=max(config.probe_images, config.imagine_bank))
    test = training_states(config, model, data.loaders["test"].dataset, device, images=args.images)
    print(f"KL(mean p_t || mean p_t-1) over the {config.eig_samples} nearest of {config.imagine_bank} training "
          f"states, {len(test.y)} test images, probes on {config.probe_images}; glimpses t = 2..{config.num_glimpses}")
    near = States(bank.h[:config.imagine_bank], None, bank.y[:config.imagine_bank])
    for fit in PROBE_FITS:
        probes = [tuple(p.cpu() for p in probe) for probe in
                  glimpse_probes(model, bank, device, images=config.probe_images, fit=fit)]
        print(f"{fit:10s} " + " ".join(f"{v:.3f}" for v in disagreement(probes, near, test, config.eig_samples)))


if __name__ == "__main__":
    exit_on_config_error(main, "probe_martingale.py")
