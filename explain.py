"""The test-time explanation of a trained RAM: test error, the hidden-state VAE (got or
trained on the frozen best checkpoint), reconstructions and IG / EIG per glimpse, and the
report in report/<run>/ (figures, metrics.json, summary.md); `--compare` overlays reports.

`test(config, data, trainer)` is called by main.py with the run's `Trainer`, which owns the
RAM, its checkpoints and `evaluate`; this file never imports trainer.py.
"""

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import folders
from arguments import ConfigError
from faults import Stopped
from information import (TILT_RIDGE, Bank, Imagination, calibration, expected_information_gain, fit_probe,
                         fit_temperature, information_gain, probe_logits, spread_check)
from plots import animate_glimpses, draw_report, plot_curves, plot_image_explanation
from policies import compare_policies
from utils import GlimpseMeter, glimpse_table, rng_state, seed_everything, set_rng_state
from vae import HiddenStateVAE, decoded_per_glimpse, load_vae, reconstruction_errors, save_vae, train_vae


def test(config, data, trainer):
    """Test the best checkpoint, then explain it: VAE reconstructions, IG and EIG per
    glimpse; write report/<run>/ (figures, metrics.json, summary.md). Returns the report."""
    state, vae = best_with_vae(config, data, trainer)
    seed_everything(config.random_seed)
    temperatures = glimpse_temperatures(config, trainer.model, data.loaders["valid"], trainer.device)
    bank_images = config.imagine_bank if config.imagine == "neighbours" else 0
    states = probes = None
    if config.probe_images or bank_images:
        states = training_states(config, trainer.model, data.loaders["train"].dataset, trainer.device,
                                 images=max(config.probe_images, bank_images))
    if config.probe_images:
        probes = glimpse_probes(trainer.model, states, trainer.device, images=config.probe_images,
                                fit=config.probe_fit)
    imagination, imagined = imagination_settings(config, trainer.model, vae, data, trainer.device, states=states,
                                                 probes=probes)
    # The report is a function of the checkpoints and the seed, whether or not the VAE
    # was trained (drawing random numbers) just before.
    seed_everything(config.random_seed)
    metrics = trainer.evaluate("test")
    print(f"test accuracy {metrics['accuracy']:.2%} (error {1 - metrics['accuracy']:.2%}) "
          f"on {metrics['count']} images, M={config.M}")
    print(glimpse_table({"accuracy": (metrics["accuracy_t"], ".2%"), "entropy H_t": (metrics["entropy_t"], ".4f"),
                         "info gain IG_t": (metrics["ig_t"], ".4f")}))
    explained, reliability, first = explain(config, trainer.model, vae, data.loaders["test"], trainer.device,
                                            temperatures=temperatures, probes=probes, imagination=imagination)
    errors = test_errors(config, trainer, metrics)
    print("test error by glimpse policy: " + ", ".join(f"{k} {v:.2%}" for k, v in errors.items()))
    policies = None
    if config.policy != ["learned"]:
        policies = compare_policies(config, trainer.model, vae, data.loaders["test"], trainer.device, config.policy,
                                    max_images=config.policy_images, imagination=imagination)
        print(policy_table(policies))
    report = {
        "run": config.run_name, "epoch": state["epoch"], "val_accuracy": state["best_acc"], "M": config.M,
        "eig_samples": config.eig_samples, "eig_estimator": config.eig_estimator, "imagination": imagined,
        "probe_fit": config.probe_fit if probes else None,
        "test_accuracy": metrics["accuracy"], "test_error": 1 - metrics["accuracy"], "test_errors": errors,
        "test_nll": metrics["nll"], "count": metrics["count"],
        "per_glimpse": {"accuracy": metrics["accuracy_t"], "entropy": metrics["entropy_t"],
                        "ig_mc": metrics["ig_t"], **explained},
        "reliability": reliability,
        "policies": policies,
        "config": vars(config),  # of this test command
        "train_config": state["config"],  # the checkpoint was trained with
    }
    report_dir = os.path.join(config.report_dir, config.run_name)
    with staged_folder(report_dir) as staging:
        draw_report(staging, first, explained, reliability, sides=trainer.model.retina.sides,
                    run_name=config.run_name, classes=data.classes)
        if policies:
            plot_policies(policies, os.path.join(staging, "policies.png"), title=f"{config.run_name}: glimpse policies")
        with open(os.path.join(staging, "metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(staging, "summary.md"), "w") as f:
            f.write(summary_markdown(report))
    print(summary_table(report))
    print(f"[*] report in {report_dir}")
    return report


def explain_images(config, data, trainer):
    """--explain_image: the best checkpoint on the given image files, each converted to the
    run's channels and resized to its image size: one sampled glimpse path per image
    (seeded by --random_seed, as at M = 1), the top-3 classes of the belief and the VAE's
    reconstruction after each glimpse; written to report/<run>/images/ (a figure and a GIF
    per image, explanations.json). Returns the explanations."""
    C, (H, W) = data.in_channels, data.image_size
    # Every file is read before anything is loaded or written: a bad one stops the command first.
    pixels = [folders.read_image(path, channels=C, size=(H, W)) for path in config.explain_image]
    x = torch.from_numpy(np.stack(pixels)).float().div_(255).to(trainer.device)  # (N, C_in, H, W)
    state, vae = best_with_vae(config, data, trainer)
    model = trainer.model
    seed_everything(config.random_seed)
    with torch.no_grad():
        model.eval()
        out = model.rollout(x, config.num_glimpses)
        probs = out.logits.softmax(-1).cpu()  # (N, T, C)
        decoded = decoded_per_glimpse(vae, vae.state_input(out.h, out.c)).cpu()  # (N, T, C, h, w)
    k = min(3, probs.shape[-1])
    top_p, top_c = probs.topk(k, -1)  # (N, T, k) each
    names = data.classes
    explanations, folder = [], os.path.join(config.report_dir, config.run_name, "images")
    with staged_folder(folder) as staging:
        for i, path in enumerate(config.explain_image):
            stem = f"{i + 1:02d}_{os.path.splitext(os.path.basename(path))[0]}"
            top = [[(names[c], float(p)) for c, p in zip(top_c[i, t].tolist(), top_p[i, t].tolist())]
                   for t in range(config.num_glimpses)]
            final = top[-1][0]
            title = f"{os.path.basename(path)}: {final[0]} ({final[1]:.0%}) after {config.num_glimpses} glimpses"
            plot_image_explanation(x[i].cpu(), out.l[i].cpu(), decoded[i], top, os.path.join(staging, stem + ".png"),
                                   sides=model.retina.sides, title=title)
            animate_glimpses(x[i:i + 1].cpu(), out.l[i:i + 1].cpu(), os.path.join(staging, stem + ".gif"),
                             sides=model.retina.sides, preds=top_c[i:i + 1, :, 0], classes=names)
            explanations.append({"file": os.path.abspath(path), "figure": stem + ".png", "gif": stem + ".gif",
                                 "prediction": final[0], "probability": final[1],
                                 "glimpses": [{"t": t + 1, "location": out.l[i, t].tolist(),
                                               "top": [{"class": c, "probability": p} for c, p in top[t]]}
                                              for t in range(config.num_glimpses)]})
            print(f"{path}: {final[0]} ({final[1]:.1%})")
            print(glimpse_table({f"top {j + 1}": ([f"{top[t][j][0]} {top[t][j][1]:.0%}" for t in range(len(top))], "")
                                 for j in range(k)}))
        with open(os.path.join(staging, "explanations.json"), "w") as f:
            json.dump({"run": config.run_name, "epoch": state["epoch"], "policy": "one sampled path (M=1)",
                       "random_seed": config.random_seed, "image_size": [H, W], "channels": C,
                       "images": explanations}, f, indent=2)
    print(f"[*] explanations in {folder}")
    return explanations


@contextlib.contextmanager
def staged_folder(path):
    """Yield a new temporary folder beside `path`; when the block ends normally it replaces
    `path` whole, else it is removed and `path` stays as it was. So an interrupted or failed
    report never leaves a partial one (at worst the old one, renamed aside, is lost with a
    crash inside the two renames)."""
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=f".tmp_{name}_")
    except OSError as err:
        raise Stopped(f"cannot write the report in {parent} ({err.strerror})") from None
    try:
        yield staging
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".old_{name}_")
            os.replace(path, os.path.join(old, name))
        os.replace(staging, path)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise Stopped(f"cannot write the report {path} ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def test_errors(config, trainer, metrics):
    """Test error of the final prediction with one sampled glimpse path per image (M = 1, the
    headline), with the policy mean (no location noise) and averaged over M = 10 paths; the
    run's own --M figure `metrics` is reused where it is one of them. Reseeded first, so each
    figure is a function of the checkpoint and the seed."""
    errors = {}
    for name, kwargs in (("M=1", {"M": 1}), ("policy mean", {"policy_mean": True}), ("M=10", {"M": 10})):
        if kwargs.get("M") == config.M:
            errors[name] = 1 - metrics["accuracy"]
            continue
        seed_everything(config.random_seed)
        errors[name] = 1 - trainer.evaluate("test", **kwargs)["accuracy"]
    return errors


def best_with_vae(config, data, trainer):
    """Load the run's best checkpoint into trainer.model (said in one line) and get its VAE
    (`hidden_state_vae`): (the checkpoint dict, the VAE)."""
    state = trainer.load("best.pt")
    print(f"[*] loaded {trainer.path('best.pt')} (epoch {state['epoch']}, "
          f"validation accuracy {state['best_acc']:.2%})")
    return state, hidden_state_vae(config, data, trainer.model, trainer.path("vae.pt"), ram_epoch=state["epoch"])


def hidden_state_vae(config, data, model, path, *, ram_epoch):
    """The run's VAE from `path` (ckpt/<run>/vae.pt); trained first when missing, continued up
    to --vae_epochs with --train_vae=True. It is tied to the RAM checkpoint it was trained on."""
    device = next(model.parameters()).device
    vae = HiddenStateVAE.from_config(config, canvas_shape=(data.in_channels, *data.image_size),
                                     clean_shape=data.clean_shape).to(device)
    expected = {**vae.settings, "ram_epoch": ram_epoch, "vae_beta": config.vae_beta}
    start, state = 0, None
    if os.path.exists(path):
        vae, state = load_vae(path, device, expected=expected)
        start = state["epoch"]
        if not config.train_vae:
            if start < config.vae_epochs:
                print(f"[!] the VAE of {config.run_name} is trained for {start} of {config.vae_epochs} "
                      f"epochs; --train_vae=True continues it")
            return vae
        if start >= config.vae_epochs:
            print(f"[*] the VAE is already trained for {start} epochs; raise --vae_epochs to continue")
            return vae
    else:
        print(f"[*] no VAE for run {config.run_name} yet: training it first on the frozen best RAM "
              f"({config.vae_epochs} epochs; --vae_epochs)")
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)
    if state is not None:
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        if state["rng"] is not None:
            set_rng_state(state["rng"], data.generator)  # older VAEs saved no shuffle state
    # Its own folder, so that purge_step (dropping the steps after the checkpoint, from an
    # interrupted epoch) cannot touch the RAM's training curves.
    writer = SummaryWriter(os.path.join(config.logs_dir, config.run_name, "vae"), purge_step=start + 1)
    saved = {**vars(config), "ram_epoch": ram_epoch}

    def checkpoint(epoch, _):
        save_vae(path, vae, optimizer, epoch, saved, rng=rng_state(data.generator))

    train_vae(vae, model, data.loaders, num_glimpses=config.num_glimpses,
              epochs=config.vae_epochs, lr=config.vae_lr, beta=config.vae_beta, device=device,
              writer=writer, start_epoch=start, optimizer=optimizer, on_epoch_end=checkpoint)
    writer.close()
    return vae


@torch.no_grad()
def glimpse_temperatures(config, model, loader, device):
    """Per glimpse t, the temperature that calibrates the belief p_t on `loader` (the
    validation split; one rollout per image): a list of T floats."""
    model.eval()
    logits, labels = [], []
    for x, _, y in tqdm(loader, desc="calibrate", unit="batch", leave=False):
        logits.append(model.rollout(x.to(device), config.num_glimpses).logits.cpu())
        labels.append(y)
    logits, labels = torch.cat(logits), torch.cat(labels)  # (N, T, C), (N,)
    return [fit_temperature(logits[:, t], labels) for t in range(logits.shape[1])]


SCALES = (1.0, 2.0, 3.0, 5.0)  # the posterior widths --imagine_scale=auto chooses from


@torch.no_grad()
def imagination_settings(config, model, vae, data, device, *, states=None, probes=None, prior_images=2000,
                         valid_images=1000):
    """How canvases are imagined for EIG and the eig policy (`information.Imagination`), from
    --imagine, --imagine_prior, --imagine_scale and --imagine_bank, and what was chosen, for the
    report.

    The prior is the first `prior_images` training canvases (in order). --imagine neighbours
    takes the first --imagine_bank training canvases and their `states` (`training_states`)
    as the bank; with --imagine_weights belief or tilted it weights the neighbours to the image's belief,
    read by `probes` when given (else by the RAM's classifier). Otherwise the VAE imagines,
    and with --imagine_scale=auto its posterior width is the one of SCALES whose imagined
    glimpses best predict the real ones
    (`information.spread_check`, mean over the glimpses after the first) on the first
    `valid_images` validation images: chosen on validation, never on the test set."""
    train = data.loaders["train"].dataset
    prior = None
    if config.imagine_prior == "data":
        prior = train[torch.arange(min(prior_images, len(train)))][0].to(device)  # (N, C_in, H, W)
    settings = {"draw": config.imagine, "prior": config.imagine_prior}
    if config.imagine == "neighbours":
        weighted = config.imagine_weights != "uniform"
        bank = neighbour_bank(vae, states, train, device, images=config.imagine_bank, model=model, probes=probes,
                              weighted=weighted, weighting=config.imagine_weights)
        settings["bank"] = min(config.imagine_bank, len(states.h))
        if weighted:
            settings["weights"] = ("probe belief" if probes else "classifier belief") + (
                f", tilted (ridge {TILT_RIDGE})" if config.imagine_weights == "tilted" else "")
        return Imagination(prior=prior, bank=bank), settings
    make = functools.partial(Imagination, bernoulli=config.imagine == "bernoulli", prior=prior)
    if config.imagine_scale != "auto" or config.num_glimpses == 1:  # one glimpse: always from the prior
        scale = 1.0 if config.imagine_scale == "auto" else float(config.imagine_scale)
        return make(scale=scale), {**settings, "scale": scale}
    valid = data.loaders["valid"].dataset
    x = valid[torch.arange(min(valid_images, len(valid)))][0].to(device)  # (N, C_in, H, W)
    model.eval()
    nll = {}
    for scale in SCALES:
        seed_everything(config.random_seed)
        total, n = 0.0, 0
        for chunk in x.split(config.batch_size):
            out = model.rollout(chunk, config.num_glimpses)
            nll_t = spread_check(model, vae, out, chunk, samples=config.eig_samples, imagination=make(scale=scale))
            total += float(nll_t[:, 1:].mean(1).sum())  # after the first glimpse: where q matters
            n += chunk.shape[0]
        nll[scale] = total / n
    scale = min(nll, key=nll.get)
    print("imagination: posterior width chosen on validation by the NLL of the real glimpse: "
          + ", ".join(f"x{k:g} {v:.2f}" for k, v in nll.items()) + f" -> x{scale:g}")
    chosen = {**settings, "scale": scale, "validation_glimpse_nll": {f"{k:g}": v for k, v in nll.items()}}
    return make(scale=scale), chosen


class States(NamedTuple):
    """The RAM's core states on one rollout of each of the first N training images (CPU)."""
    h: torch.Tensor  # (N, T, D)
    c: torch.Tensor | None  # (N, T, D) for an LSTM
    y: torch.Tensor  # (N,)


@torch.no_grad()
def training_states(config, model, dataset, device, *, images):
    """`States` of the first `images` images of `dataset` (the training split, in order, so
    that nothing depends on the shuffle; one rollout per image), for the probes and the
    neighbour imagination's bank."""
    model.eval()
    hs, cs, labels, n = [], [], [], min(images, len(dataset))
    for start in tqdm(range(0, n, config.batch_size), desc="training states", unit="batch", leave=False):
        x, _, y = dataset[torch.arange(start, min(start + config.batch_size, n))]
        out = model.rollout(x.to(device), config.num_glimpses)
        hs.append(out.h.cpu())
        cs.append(None if out.c is None else out.c.cpu())
        labels.append(y)
    return States(torch.cat(hs), None if cs[0] is None else torch.cat(cs), torch.cat(labels))


def glimpse_probes(model, states, device, *, images, fit="labels"):
    """Per glimpse t, a linear probe (`information.fit_probe`) fitted on the frozen h_t of the
    first `images` of `states` (`training_states`): what the state after glimpse t knows,
    whatever the RAM's own classifier reads from it. A list of T (W (C, D), b (C,)) on device.

    The last glimpse's probe is fitted to the labels; an earlier one to the labels too with
    fit="labels", or with fit="distilled" to the beliefs of the probe of the next glimpse on the
    next state, fitted first. Beliefs are a martingale (the belief before a glimpse is the mean
    of the beliefs after it); probes fitted to the labels each on its own need not be. A
    distilled probe is the linear-softmax fit of E[p_{t+1} | h_t], and for a calibrated p_{t+1}
    the same target as the label in expectation (with less noise)."""
    h, y = states.h[:images], states.y[:images]  # (N, T, D), (N,)
    C, T = model.classifier.fc.out_features, h.shape[1]
    probes = [None] * T
    for t in reversed(range(T)):
        target = y if fit == "labels" or t == T - 1 else probe_logits(probes, t + 1, h[:, t + 1]).softmax(-1)
        probes[t] = fit_probe(h[:, t], target, num_classes=C)  # on the CPU, where states are
    return [tuple(p.to(device) for p in probe) for probe in probes]


@torch.no_grad()
def neighbour_bank(vae, states, dataset, device, *, images, model=None, probes=None, weighted=False,
                   weighting="belief"):
    """The neighbour imagination's `information.Bank`: the first `images` training canvases,
    keyed by the VAE's input (`vae.state_input`) after each glimpse but the last. Weighted, the
    bank also holds each state's belief, read by `probes` when given, else by the model's
    classifier, and weights the neighbours to the image's belief (`weighting`: "belief" or
    "tilted", `information.Bank`)."""
    h, c = states.h[:images], None if states.c is None else states.c[:images]
    keys = tuple(vae.state_input(h[:, t].to(device), None if c is None else c[:, t].to(device))
                 for t in range(h.shape[1] - 1))  # each (N, D or 2D)
    bank = Bank(dataset=dataset, keys=keys, probes=probes if weighted else None, weighting=weighting)
    if not weighted:
        return bank
    beliefs = tuple(torch.cat([bank.belief(model.classifier, chunk.to(device), t + 1).cpu()
                               for chunk in h[:, t].split(4096)]) for t in range(h.shape[1] - 1))  # each (N, C)
    return dataclasses.replace(bank, beliefs=beliefs)


@torch.no_grad()
def explain(config, model, vae, loader, device, *, temperatures=None, probes=None, imagination=Imagination(),
            shown=8):
    """Per-glimpse means and standard errors over a loader of the VAE's reconstruction error
    (MSE, BCE), the realised (IG) and expected (EIG) information gain of one rollout per
    image, and the calibration (ECE, NLL) of its beliefs, also after dividing the logits of
    glimpse t by temperatures[t] (`glimpse_temperatures`) when given, and the accuracy, NLL
    and ECE of the linear probes (`glimpse_probes`) on the same states when given. Returns
    (result: name -> list of T floats, incl. name_se; the reliability bins; the first
    `shown` images with their rollout, for the figures)."""
    model.eval()
    meter = GlimpseMeter()
    first = None
    confidences, corrects, scaled_confidences, probe_confidences, probe_corrects = [], [], [], [], []
    tau = torch.tensor(temperatures or [1.0] * config.num_glimpses, device=device)  # (T,)
    for x, x_clean, y in tqdm(loader, desc="explain", unit="batch"):
        x, x_clean, y = x.to(device), x_clean.to(device), y.to(device)
        out = model.rollout(x, config.num_glimpses)
        probs = out.logits.softmax(-1)  # (B, T, C)
        decoded = decoded_per_glimpse(vae, vae.state_input(out.h, out.c))  # (B, T, 1, 28, 28)
        mse, bce = reconstruction_errors(decoded, x_clean)  # (B, T) each
        expected = expected_information_gain(model, vae, out, x, samples=config.eig_samples,
                                             imagination=imagination, probes=probes, estimator=config.eig_estimator)
        label = y[:, None, None].expand(-1, probs.shape[1], 1)  # (B, T, 1)
        nll = -out.logits.log_softmax(-1).gather(2, label)[..., 0]  # (B, T)
        scaled = (out.logits / tau[:, None]).log_softmax(-1)  # (B, T, C)
        meter.update(ig=information_gain(probs), eig=expected.eig, eig_gap=expected.gap, nll=nll, recon_mse=mse,
                     recon_bce=bce, nll_scaled=-scaled.gather(2, label)[..., 0], glimpse_nll=expected.glimpse_nll)
        confidence, predicted = probs.max(-1)  # (B, T) each
        confidences.append(confidence.cpu())
        scaled_confidences.append(scaled.max(-1).values.exp().cpu())
        corrects.append((predicted == y[:, None]).cpu())
        if probes:
            probe = torch.stack([probe_logits(probes, t, out.h[:, t]) for t in range(len(probes))], 1).log_softmax(-1)
            probe_confidence, probe_predicted = probe.max(-1)  # (B, T) each
            probe_correct = probe_predicted == y[:, None]
            meter.update(probe_accuracy=probe_correct.float(), probe_nll=-probe.gather(2, label)[..., 0],
                         probe_ig=information_gain(probe.exp()), probe_eig=expected.probe_eig,
                         probe_eig_gap=expected.probe_gap)
            probe_confidences.append(probe_confidence.exp().cpu())
            probe_corrects.append(probe_correct.cpu())
        if first is None:
            first = (x[:shown].cpu(), x_clean[:shown].cpu(), y[:shown].cpu(), out.l[:shown].cpu(),
                     out.logits[:shown].argmax(-1).cpu(), decoded[:shown].cpu())
    result = {}
    for key in ("ig", "eig", "eig_gap", "nll", "nll_scaled", "recon_mse", "recon_bce", "glimpse_nll"):
        result[key], result[key + "_se"] = meter.mean(key), meter.se(key)
    result["eig_over_ig"] = ratio(result["eig"], result["ig"])
    confidence, correct = torch.cat(confidences), torch.cat(corrects)  # (N, T)
    bins = [calibration(confidence[:, t], correct[:, t]) for t in range(confidence.shape[1])]
    result["ece"] = [b[0] for b in bins]
    scaled_confidence = torch.cat(scaled_confidences)
    result["ece_scaled"] = [calibration(scaled_confidence[:, t], correct[:, t])[0] for t in range(correct.shape[1])]
    result["temperature"] = tau.tolist()
    if probes:
        for key in ("probe_accuracy", "probe_nll", "probe_ig", "probe_eig", "probe_eig_gap"):
            result[key], result[key + "_se"] = meter.mean(key), meter.se(key)
        result["probe_eig_over_ig"] = ratio(result["probe_eig"], result["probe_ig"])
        confidence, correct = torch.cat(probe_confidences), torch.cat(probe_corrects)  # (N, T)
        result["probe_ece"] = [calibration(confidence[:, t], correct[:, t])[0] for t in range(correct.shape[1])]
    reliability = {"confidence": [b[1] for b in bins], "accuracy": [b[2] for b in bins],
                   "count": [b[3] for b in bins]}
    return result, reliability, first


def ratio(numerators, denominators):
    """Element-wise a / b of two lists, nan where b is 0."""
    return [a / b if abs(b) > 1e-12 else float("nan") for a, b in zip(numerators, denominators)]


def _policy_columns(policies):
    columns = {}
    for name, p in policies.items():
        columns[f"{name} acc"] = (p["accuracy"], ".2%")
        columns[f"{name} IG"] = (p["ig"], ".3f")
        columns[f"{name} EIG"] = (p["eig"], ".3f")
    return columns


def policy_table(policies, *, markdown=False):
    """Accuracy, IG and EIG after each glimpse under each policy, and each policy's images and time."""
    timing = "; ".join(f"{name}: {p['images']} images in {p['seconds']:.1f} s" for name, p in policies.items())
    return glimpse_table(_policy_columns(policies), markdown=markdown) + f"\n\n({timing})"


def plot_policies(policies, path, *, title=None):
    """policies.png: accuracy, IG and EIG per glimpse, one curve per policy."""
    panels = {"accuracy after glimpse t": {n: (p["accuracy"], p["accuracy_se"]) for n, p in policies.items()},
              "realised information gain IG_t": {n: (p["ig"], p["ig_se"]) for n, p in policies.items()},
              "expected information gain EIG_t": {n: (p["eig"], p["eig_se"]) for n, p in policies.items()}}
    plot_curves(panels, path, title=title)


def _columns(g):
    return {"accuracy": (g["accuracy"], ".2%"), "entropy": (g["entropy"], ".4f"), "IG": (g["ig"], ".4f"),
            "EIG": (g["eig"], ".4f"), "EIG/IG": (g["eig_over_ig"], ".2f"), "EIG gap": (g["eig_gap"], ".4f"),
            "ECE": (g["ece"], ".3f"), "NLL": (g["nll"], ".3f"), "temperature": (g["temperature"], ".2f"),
            "ECE scaled": (g["ece_scaled"], ".3f"), "NLL scaled": (g["nll_scaled"], ".3f"),
            "recon MSE": (g["recon_mse"], ".5f"), "recon BCE": (g["recon_bce"], ".4f"),
            "glimpse NLL": (g["glimpse_nll"], ".2f"),
            **({"probe acc": (g["probe_accuracy"], ".2%"), "probe NLL": (g["probe_nll"], ".3f"),
                "probe ECE": (g["probe_ece"], ".3f"), "probe IG": (g["probe_ig"], ".4f"),
                "probe EIG": (g["probe_eig"], ".4f"), "probe EIG/IG": (g["probe_eig_over_ig"], ".2f"),
                "probe EIG gap": (g["probe_eig_gap"], ".4f")} if "probe_accuracy" in g else {})}


def summary_table(report):
    """The per-glimpse table of a report as aligned text."""
    return glimpse_table(_columns(report["per_glimpse"]))


# What the linear probes were fitted to, by --probe_fit, for summary.md (reports without the
# key were fitted to the labels).
PROBE_TARGETS = {"labels": "the labels",
                 "distilled": "the labels at the last glimpse and, before it, the next glimpse's probe's "
                              "beliefs on the next state"}


def summary_markdown(report):
    """summary.md: the report's numbers as a table a person can read."""
    g = report["per_glimpse"]
    columns = _columns(g)
    for key, name in (("ig", "IG"), ("eig", "EIG"), ("eig_gap", "EIG gap"), ("recon_mse", "recon MSE")):
        spec = columns[name][1]
        columns[name] = ([f"{v:{spec}} ± {s:{spec}}" for v, s in zip(g[key], g[key + "_se"])], "")
    imagined = report.get("imagination") or {}
    source = (f"training canvases whose RAM state after as many glimpses is nearest (of the first "
              f"{imagined['bank']})" if imagined.get("draw") == "neighbours" else "canvases imagined by the VAE")
    if imagined.get("weights"):
        source += (f", weighted to the image's {imagined['weights']} (the mix of its neighbours' own "
                   "beliefs made the image's)")
    lines = [f"# {report['run']}", "",
             f"Best checkpoint: epoch {report['epoch']}. Test accuracy {report['test_accuracy']:.2%} "
             f"(error {report['test_error']:.2%}) on {report['count']} images, M={report['M']}.", "",
             "Test error by glimpse policy: " + ", ".join(
                 f"{k} {v:.2%}" for k, v in report["test_errors"].items()) + " (M=1: one sampled path per "
             "image; policy mean: l_t = mu_t, no location noise; M=10: probabilities averaged over 10 "
             "sampled paths).", "",
             "Per glimpse t, on the test set (mean, and standard error over images). Accuracy and "
             "entropy H_t from the M-averaged prediction; from one rollout per image: IG_t = H_{t-1} - H_t, "
             "EIG_t (the mutual information between the class and the glimpse over S="
             f"{report['eig_samples']} {source}) and its consistency gap (KL of "
             "the imagined beliefs' mean to the real belief; 0 when they agree), both by the "
             f"{report.get('eig_estimator', 'plugin')} estimator, the expected "
             "calibration error (ECE, 15 bins) and NLL of the belief p_t, also after temperature scaling "
             "(the logits of glimpse t divided by the temperature fitted on the validation split; the "
             "IG and EIG columns use the unscaled beliefs); reconstruction error of the "
             "VAE's decoded mean image from h_t against the clean digit; and, when fitted, a linear "
             "probe per glimpse (multinomial logistic regression on the frozen h_t of training "
             "images, fitted to " + PROBE_TARGETS.get(report.get("probe_fit"), "the labels")
             + "): what the state knows, whatever the RAM's own classifier reads from it.", "",
             glimpse_table(columns, markdown=True), "",
             "Figures: `reconstructions.png`, `reconstruction_error.png`, `information_gain.png`, "
             "`reliability.png`, `glimpses.png`, `glimpses.gif`" + (", `policies.png`" if report.get("policies") else "")
             + ".", ""]
    if report.get("policies"):
        lines += ["## Glimpse policies", "",
                  "The same frozen RAM looking where each policy says (learned: one sampled path of the "
                  "location network; random: uniform; eig: the candidate of largest expected information "
                  f"gain, from {source}). Accuracy after glimpse t, realised IG_t and EIG_t at the chosen "
                  "locations (a fresh estimate).", "", policy_table(report["policies"], markdown=True), ""]
    return "\n".join(lines)


def compare_runs(report_dir, runs):
    """Overlay the per-glimpse curves of the reports of several runs in one figure,
    report_dir/compare_<A>_vs_<B>...png, and print them; returns the figure's path."""
    reports = {}
    for run in runs:
        path = os.path.join(report_dir, run, "metrics.json")
        if not os.path.isfile(path):
            raise ConfigError(f"no report for run {run} at {path}: write it with --is_train=False first")
        try:
            with open(path) as f:
                reports[run] = json.load(f)["per_glimpse"]
            for key in ("accuracy", "ig", "ig_se", "eig", "eig_se", "recon_mse", "recon_mse_se"):
                reports[run][key] = [float(v) for v in reports[run][key]]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"report {path} is corrupt or incomplete ({type(err).__name__}: {err})")
    panels = {
        "accuracy after glimpse t": {run: (g["accuracy"], None) for run, g in reports.items()},
        "realised information gain IG_t": {run: (g["ig"], g["ig_se"]) for run, g in reports.items()},
        "expected information gain EIG_t": {run: (g["eig"], g["eig_se"]) for run, g in reports.items()},
        "VAE reconstruction MSE": {run: (g["recon_mse"], g["recon_mse_se"]) for run, g in reports.items()},
    }
    out = os.path.join(report_dir, "compare_" + "_vs_".join(runs) + ".png")
    plot_curves(panels, out)
    for run, g in reports.items():
        print(run)
        print(glimpse_table({"accuracy": (g["accuracy"], ".2%"), "IG": (g["ig"], ".4f"),
                             "EIG": (g["eig"], ".4f"), "recon MSE": (g["recon_mse"], ".5f")}))
    print(f"[*] comparison in {out}")
    return out
