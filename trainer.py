"""Rewards, returns and losses (pure functions), the train/validate/test loops, checkpoints, logs."""

import json
import math
import os

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from arguments import LEGACY_DEFAULTS, MODEL_FIELDS, TRAINING_FIELDS, ConfigError
from information import entropy, information_gain
from model import RecurrentAttention
from utils import (AverageMeter, animate_glimpses, atomic_save, check_matches, first_line, load_checkpoint, plot_curves,
                   plot_glimpses, plot_reconstructions, rng_state, seed_everything, set_rng_state)
from vae import (HiddenStateVAE, decoded_per_glimpse, expected_information_gain, load_vae,
                 reconstruction_errors, save_vae, train_vae)

CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------- pure maths

def rewards(logits, y, *, reward="default", beta=0.5):
    """Reward r (B, T) of each glimpse, from logits (B, T, C) and labels y (B,).

    default (the paper): r_T = 1[argmax p_T == y], r_t = 0 for t < T.
    infogain: r_t += beta * IG_t, IG_t = H_{t-1} - H_t the drop in the classifier's
    entropy caused by glimpse t (H_0 = log C). A reward is a constant: no gradient.
    """
    logits = logits.detach()
    r = torch.zeros(logits.shape[:2], device=logits.device)  # (B, T)
    r[:, -1] = (logits[:, -1].argmax(-1) == y).float()
    if reward == "infogain":
        r = r + beta * information_gain(logits.softmax(-1))
    elif reward != "default":
        raise ValueError(f"unknown reward {reward!r}")
    return r


def returns(r):
    """Return-to-go G_t = sum_{k >= t} r_k: (B, T) -> (B, T)."""
    return r.flip(1).cumsum(1).flip(1)


def ac2_advantage(r, b):
    """One-step actor-critic advantage (B, T): A_t = r_t + b_{t+1} - b_t for t < T, A_T = r_T - b_T.

    b_t = b(h_{t-1}) values the state in which l_t is chosen; b is treated as a constant.
    """
    b = b.detach()
    next_b = torch.cat([b[:, 1:], torch.zeros_like(b[:, :1])], 1)  # (B, T): b_{t+1}, 0 after T
    return r + next_b - b


def advantages(r, b, *, training_mode="reinforce"):
    """reinforce: A_t = G_t - b_t (return-to-go minus the detached baseline); ac2: `ac2_advantage`."""
    if training_mode == "reinforce":
        return returns(r) - b.detach()
    if training_mode == "ac2":
        return ac2_advantage(r, b)
    raise ValueError(f"unknown training mode {training_mode!r}")


def reinforce_loss(log_pi, advantage):
    """-sum_t log pi_t * A_t, averaged over the batch; A is treated as a constant.

    Its gradient with respect to the policy mean is -(l - mu) / std^2 * A per step.
    """
    return -(log_pi * advantage.detach()).sum(1).mean()


def baseline_loss(b, G):
    """Mean squared error of the baseline b_t against the return G_t (B, T)."""
    return F.mse_loss(b, G.detach())


def classification_loss(logits, y, *, every_glimpse=False):
    """Cross-entropy -log p_T(y) of the final prediction, batch mean; with every_glimpse,
    the mean over t = 1..T of -log p_t(y)."""
    if every_glimpse:
        T = logits.shape[1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat_interleave(T))
    return F.cross_entropy(logits[:, -1], y)


def hybrid_loss(out, y, *, actor_weight=1.0, critic_weight=1.0, reward="default", beta=0.5,
                training_mode="reinforce", classify_all=False):
    """The paper's hybrid loss: NLL + critic_weight * baseline MSE + actor_weight * REINFORCE.

    The baseline is regressed on the return G_t in both training modes; the advantage is
    G_t - b_t (reinforce) or r_t + b_{t+1} - b_t (ac2), b detached either way.
    Returns a dict of scalar tensors (loss, nll, baseline, reinforce, reward) and the
    per-step (T,) batch means of reward_t and advantage_t.
    """
    r = rewards(out.logits, y, reward=reward, beta=beta)  # (B, T)
    A = advantages(r, out.b, training_mode=training_mode)  # (B, T)
    terms = {
        "nll": classification_loss(out.logits, y, every_glimpse=classify_all),
        "baseline": baseline_loss(out.b, returns(r)),
        "reinforce": reinforce_loss(out.log_pi, A),
    }
    terms["loss"] = terms["nll"] + critic_weight * terms["baseline"] + actor_weight * terms["reinforce"]
    terms["reward"] = r.sum(1).mean()
    terms["reward_t"] = r.mean(0)
    terms["advantage_t"] = A.mean(0)
    return terms


def loss_settings(config):
    """The keyword arguments of `hybrid_loss` that the config sets."""
    return dict(actor_weight=config.actor_weight, critic_weight=config.critic_weight,
                reward=config.reward, beta=config.reward_beta, training_mode=config.training_mode,
                classify_all=config.classify_all)


def glimpse_statistics(probs, y):
    """Per-glimpse batch sums (T,) of correct predictions, entropy H_t and IG_t, from
    class probabilities probs (B, T, C) and labels y (B,)."""
    return {
        "correct_t": (probs.argmax(-1) == y[:, None]).float().sum(0),
        "entropy_t": entropy(probs).sum(0),
        "ig_t": information_gain(probs).sum(0),
    }


def mc_probabilities(model, x, num_glimpses, M):
    """Class probabilities (B, T, C) after each glimpse, averaged over M rollouts per image."""
    B = x.shape[0]
    logits = model.rollout(x.repeat(M, 1, 1, 1), num_glimpses).logits  # (M*B, T, C)
    return logits.softmax(-1).view(M, B, *logits.shape[1:]).mean(0)  # (B, T, C)


def per_glimpse(sums, n):
    """Batch sums (T,) -> means as lists, renaming correct_t to accuracy_t; accuracy = accuracy_T."""
    metrics = {("accuracy_t" if k == "correct_t" else k): (v / n).tolist() for k, v in sums.items()}
    metrics["accuracy"] = metrics["accuracy_t"][-1]
    return metrics


def format_glimpse_table(metrics):
    """Per-glimpse accuracy, entropy and IG as a small text table."""
    rows = ["glimpse  accuracy  entropy H_t  info gain IG_t"]
    for t, (a, h, ig) in enumerate(zip(metrics["accuracy_t"], metrics["entropy_t"], metrics["ig_t"]), 1):
        rows.append(f"{t:>7}  {a:>8.2%}  {h:>11.4f}  {ig:>14.4f}")
    return "\n".join(rows)


def log_scalars(writer, prefix, metrics, step):
    """Scalars as prefix/name; per-glimpse lists as prefix/name/glimpse_t."""
    for key, value in metrics.items():
        if isinstance(value, list):
            for t, v in enumerate(value, 1):
                writer.add_scalar(f"{prefix}/{key[:-2]}/glimpse_{t}", v, step)
        elif key != "count":
            writer.add_scalar(f"{prefix}/{key}", value, step)


# ----------------------------------------------------------------------------- the loops

class Trainer:
    """Trains, validates and tests one run; owns its checkpoints, logs and plots."""

    def __init__(self, config, data):
        self.config = config
        self.data = data
        self.device = torch.device("cuda" if config.use_gpu else "cpu")
        self.model = RecurrentAttention.from_config(
            config, in_channels=data.in_channels, num_classes=data.num_classes).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.init_lr)
        if config.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
        else:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=0.1, patience=config.lr_patience)
        self.run_dir = os.path.join(config.ckpt_dir, config.run_name)
        # best_acc starts below any accuracy, so the first epoch always writes best.pt.
        self.epoch, self.best_acc, self.counter = 0, -1.0, 0

    # -- checkpoints

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def save(self, is_best):
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": vars(self.config),
            "epoch": self.epoch,
            "best_acc": self.best_acc,
            "counter": self.counter,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(self.data.generator),
        }
        atomic_save(state, self.path("latest.pt"))
        if is_best:
            atomic_save(state, self.path("best.pt"))

    def load(self, name, fields=MODEL_FIELDS):
        """Load checkpoint `name` of this run, checking that `fields` match the command line."""
        path = self.path(name)
        state = load_checkpoint(path, self.device, kind="RAM", version=CHECKPOINT_FORMAT)
        check_matches(f"checkpoint {path} does not match the command line", {**LEGACY_DEFAULTS, **state["config"]},
                      {k: getattr(self.config, k) for k in fields})
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ConfigError(f"checkpoint {path} does not fit the model: {first_line(err)}")
        return state

    def resume(self):
        state = self.load("latest.pt", MODEL_FIELDS + TRAINING_FIELDS)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_acc, self.counter = state["epoch"], state["best_acc"], state["counter"]
        set_rng_state(state["rng"], self.data.generator)

    # -- training

    def train(self):
        config = self.config
        if config.resume:
            self.resume()
            print(f"[*] resumed {config.run_name} after epoch {self.epoch} "
                  f"(best validation accuracy {self.best_acc:.2%})")
        elif os.path.exists(self.path("latest.pt")):
            raise ConfigError(f"run {config.run_name} already has checkpoints in {self.run_dir}: "
                              f"continue it with --resume=True, or pick another --run_name")
        os.makedirs(self.run_dir, exist_ok=True)
        with open(self.path("config.json"), "w") as f:
            json.dump(vars(config), f, indent=2)
        writer = SummaryWriter(os.path.join(config.logs_dir, config.run_name), purge_step=self.epoch + 1)
        writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(vars(config).items())),
                        self.epoch)
        n_train = len(self.data.loaders["train"].dataset)
        n_valid = len(self.data.loaders["valid"].dataset)
        print(f"[*] train on {n_train} images, validate on {n_valid}; run {config.run_name}")
        if self.epoch >= config.epochs:
            print(f"[*] already trained for {self.epoch} epochs: raise --epochs to continue")

        while self.epoch < config.epochs:
            self.epoch += 1
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_one_epoch()
            valid = self.evaluate("valid")
            if self.config.lr_schedule == "cosine":
                self.scheduler.step()
            else:
                self.scheduler.step(valid["accuracy"])
            is_best = valid["accuracy"] > self.best_acc
            if is_best:
                self.best_acc, self.counter = valid["accuracy"], 0
            else:
                self.counter += 1
            log_scalars(writer, "train", train, self.epoch)
            log_scalars(writer, "val", valid, self.epoch)
            writer.add_scalar("train/lr", lr, self.epoch)
            writer.add_scalar("train/policy_std", config.std, self.epoch)
            print(f"epoch {self.epoch}/{config.epochs}: train loss {train['loss']:.3f} "
                  f"acc {train['accuracy']:.2%} | valid acc {valid['accuracy']:.2%} "
                  f"(error {1 - valid['accuracy']:.2%}){' [best]' if is_best else ''} | lr {lr:.2g}")
            if config.plot_freq and self.epoch % config.plot_freq == 0:
                self.plot(os.path.join(config.plot_dir, config.run_name, f"epoch_{self.epoch}.png"))
            self.save(is_best)
            if self.counter >= config.train_patience:
                print(f"[!] no validation gain for {self.counter} epochs: stopping")
                break
        writer.close()

    def train_one_epoch(self):
        """One pass over the training set; returns epoch means, per-glimpse ones as lists."""
        config, model = self.config, self.model
        model.train()
        meters = {k: AverageMeter() for k in ("loss", "nll", "baseline", "reinforce", "reward")}
        sums = {k: torch.zeros(config.num_glimpses) for k in
                ("correct_t", "entropy_t", "ig_t", "reward_t", "advantage_t", "mu_spread_t")}
        n = 0
        bar = tqdm(self.data.loaders["train"], desc=f"epoch {self.epoch}", leave=False, unit="batch",
                   dynamic_ncols=True)
        for i, (x, _, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            out = model.rollout(x, config.num_glimpses)
            terms = hybrid_loss(out, y, **loss_settings(config))
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()

            with torch.no_grad():
                B = y.shape[0]
                step = glimpse_statistics(out.logits.softmax(-1), y)
                step["reward_t"] = terms["reward_t"] * B
                step["advantage_t"] = terms["advantage_t"] * B
                step["mu_spread_t"] = out.mu.std(0).mean(-1) * B if B > 1 else torch.zeros_like(step["ig_t"])
                for key in sums:
                    sums[key] += step[key].cpu()
                for key, meter in meters.items():
                    meter.update(terms[key].item(), B)
                n += B
            if not math.isfinite(meters["loss"].avg):
                raise FloatingPointError(f"the loss became {meters['loss'].avg} at epoch {self.epoch}")
            if i % 20 == 0:
                bar.set_postfix(loss=f"{meters['loss'].avg:.3f}", acc=f"{sums['correct_t'][-1] / n:.1%}")
        metrics = {k: m.avg for k, m in meters.items()}
        metrics.update(per_glimpse(sums, n))
        return metrics

    @torch.no_grad()
    def evaluate(self, split):
        """Accuracy, entropy H_t and information gain IG_t after each glimpse, and the final
        NLL, on a split; class probabilities averaged over M rollouts per image."""
        config, model = self.config, self.model
        model.eval()
        sums = {k: torch.zeros(config.num_glimpses) for k in ("correct_t", "entropy_t", "ig_t")}
        nll, n = 0.0, 0
        for x, _, y in tqdm(self.data.loaders[split], desc=split, leave=False, unit="batch"):
            x, y = x.to(self.device), y.to(self.device)
            probs = mc_probabilities(model, x, config.num_glimpses, config.M)  # (B, T, C)
            for key, value in glimpse_statistics(probs, y).items():
                sums[key] += value.cpu()
            nll += -probs[:, -1].gather(1, y[:, None]).clamp_min(1e-12).log().sum().item()
            n += y.shape[0]
        metrics = per_glimpse(sums, n)
        metrics.update(nll=nll / n, count=n)
        return metrics

    @torch.no_grad()
    def plot(self, path):
        """Glimpse paths of the first validation images."""
        x, _, y = next(iter(self.data.loaders["valid"]))
        x = x[:9].to(self.device)
        out = self.model.rollout(x, self.config.num_glimpses)
        plot_glimpses(x, out.l, path, sides=self.model.retina.sides, labels=y[:9],
                      preds=out.logits[:, -1].argmax(-1))

    # -- testing and explaining

    def test(self):
        """Test the best checkpoint, then explain it: VAE reconstructions, IG and EIG per
        glimpse; write report/<run>/ (figures, metrics.json, summary.md)."""
        config = self.config
        state = self.load("best.pt")
        print(f"[*] loaded {self.path('best.pt')} (epoch {state['epoch']}, "
              f"validation accuracy {state['best_acc']:.2%})")
        vae = self.hidden_state_vae(ram_epoch=state["epoch"])
        # The report is a function of the checkpoints and the seed, whether or not the VAE
        # was trained (drawing random numbers) just before.
        seed_everything(config.random_seed)
        metrics = self.evaluate("test")
        print(f"test accuracy {metrics['accuracy']:.2%} (error {1 - metrics['accuracy']:.2%}) "
              f"on {metrics['count']} images, M={config.M}")
        print(format_glimpse_table(metrics))
        report_dir = os.path.join(config.report_dir, config.run_name)
        explained = self.explain(vae, report_dir)
        report = {
            "run": config.run_name, "epoch": state["epoch"], "M": config.M,
            "eig_samples": config.eig_samples, "test_accuracy": metrics["accuracy"],
            "test_error": 1 - metrics["accuracy"], "test_nll": metrics["nll"], "count": metrics["count"],
            "per_glimpse": {"accuracy": metrics["accuracy_t"], "entropy": metrics["entropy_t"],
                            "ig_mc": metrics["ig_t"], **explained},
            "config": vars(config),
        }
        with open(os.path.join(report_dir, "metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(report_dir, "summary.md"), "w") as f:
            f.write(summary_markdown(report))
        print(summary_table(report))
        print(f"[*] report in {report_dir}")
        return report

    def hidden_state_vae(self, *, ram_epoch):
        """The run's VAE from ckpt/<run>/vae.pt; trained first when missing, continued up to
        --vae_epochs with --train_vae=True. It is tied to the RAM checkpoint it was trained on."""
        config = self.config
        path = self.path("vae.pt")
        vae = HiddenStateVAE.from_config(config, canvas_size=self.data.image_size,
                                         canvas_channels=self.data.in_channels).to(self.device)
        expected = {**vae.settings, "ram_epoch": ram_epoch, "vae_beta": config.vae_beta}
        start, state = 0, None
        if os.path.exists(path):
            vae, state = load_vae(path, self.device, expected=expected)
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
                set_rng_state(state["rng"])
        writer = SummaryWriter(os.path.join(config.logs_dir, config.run_name))
        saved = {**vars(config), "ram_epoch": ram_epoch}

        def checkpoint(epoch, _):
            save_vae(path, vae, optimizer, epoch, saved, rng=rng_state())

        train_vae(vae, self.model, self.data.loaders, num_glimpses=config.num_glimpses,
                  epochs=config.vae_epochs, lr=config.vae_lr, beta=config.vae_beta, device=self.device,
                  writer=writer, start_epoch=start, optimizer=optimizer, on_epoch_end=checkpoint)
        writer.close()
        return vae

    @torch.no_grad()
    def explain(self, vae, report_dir, *, shown=8):
        """Per-glimpse means and standard errors over the test set of the VAE's reconstruction
        error (MSE, BCE) and the realised (IG) and expected (EIG) information gain of one
        rollout per image; draws the report's figures from the first batch."""
        config, model = self.config, self.model
        model.eval()
        names = ("ig", "eig", "recon_mse", "recon_bce")
        sums = {k: torch.zeros(config.num_glimpses, dtype=torch.float64) for k in names}
        squares = {k: torch.zeros(config.num_glimpses, dtype=torch.float64) for k in names}
        n, first = 0, None
        for x, x_clean, y in tqdm(self.data.loaders["test"], desc="explain", unit="batch"):
            x, x_clean = x.to(self.device), x_clean.to(self.device)
            out = model.rollout(x, config.num_glimpses)
            decoded = decoded_per_glimpse(vae, out.h)  # (B, T, 1, 28, 28)
            mse, bce = reconstruction_errors(decoded, x_clean)  # (B, T) each
            values = {
                "ig": information_gain(out.logits.softmax(-1)),
                "eig": expected_information_gain(model, vae, out, x, samples=config.eig_samples)[0],
                "recon_mse": mse,
                "recon_bce": bce,
            }
            for key, v in values.items():
                v = v.double().cpu()
                sums[key] += v.sum(0)
                squares[key] += (v * v).sum(0)
            n += y.shape[0]
            if first is None:
                first = (x[:shown].cpu(), x_clean[:shown].cpu(), y[:shown], out.l[:shown].cpu(),
                         out.logits[:shown].argmax(-1).cpu(), decoded[:shown].cpu())
        result = {}
        for key in names:
            mean = sums[key] / n
            var = (squares[key] / n - mean ** 2).clamp_min(0) * n / max(n - 1, 1)
            result[key], result[key + "_se"] = mean.tolist(), (var / n).sqrt().tolist()
        result["eig_over_ig"] = [e / i if abs(i) > 1e-12 else float("nan")
                                 for e, i in zip(result["eig"], result["ig"])]
        self.draw_report(report_dir, first, result)
        return result

    def draw_report(self, report_dir, first, result):
        x, x_clean, y, l, preds, decoded = first
        sides = self.model.retina.sides
        cluttered = x.shape[-1] != x_clean.shape[-1] or not torch.equal(x, x_clean)
        plot_reconstructions(x, l, decoded, os.path.join(report_dir, "reconstructions.png"), sides=sides,
                             clean=x_clean if cluttered else None, labels=y)
        plot_curves({"per-pixel MSE to the clean digit": {"MSE": (result["recon_mse"], result["recon_mse_se"])},
                     "per-pixel BCE to the clean digit": {"BCE": (result["recon_bce"], result["recon_bce_se"])}},
                    os.path.join(report_dir, "reconstruction_error.png"),
                    title=f"{self.config.run_name}: VAE reconstruction after glimpse t")
        plot_curves({"information gain (nats)": {"realised IG": (result["ig"], result["ig_se"]),
                                                 "expected EIG": (result["eig"], result["eig_se"])},
                     "EIG / IG": {"ratio": (result["eig_over_ig"], None)}},
                    os.path.join(report_dir, "information_gain.png"),
                    title=f"{self.config.run_name}: information gain per glimpse")
        plot_glimpses(x, l, os.path.join(report_dir, "glimpses.png"), sides=sides, labels=y,
                      preds=preds[:, -1])
        animate_glimpses(x, l, os.path.join(report_dir, "glimpses.gif"), sides=sides, labels=y, preds=preds)


def summary_table(report):
    """The per-glimpse table of a report as aligned text."""
    g = report["per_glimpse"]
    rows = [" t  accuracy  entropy      IG        EIG  EIG/IG  recon MSE  recon BCE"]
    for t in range(len(g["accuracy"])):
        rows.append(f"{t + 1:>2}  {g['accuracy'][t]:>8.2%}  {g['entropy'][t]:>7.4f}  {g['ig'][t]:>6.4f}  "
                    f"{g['eig'][t]:>9.4f}  {g['eig_over_ig'][t]:>6.2f}  {g['recon_mse'][t]:>9.5f}  "
                    f"{g['recon_bce'][t]:>9.4f}")
    return "\n".join(rows)


def summary_markdown(report):
    """summary.md: the report's numbers as a table a person can read."""
    g = report["per_glimpse"]
    lines = [f"# {report['run']}", "",
             f"Best checkpoint: epoch {report['epoch']}. Test accuracy {report['test_accuracy']:.2%} "
             f"(error {report['test_error']:.2%}) on {report['count']} images, M={report['M']}.", "",
             "Per glimpse t, on the test set (mean, and standard error over images). Accuracy and "
             "entropy H_t from the M-averaged prediction; IG_t = H_{t-1} - H_t and EIG_t (S="
             f"{report['eig_samples']} imagined images from the VAE) of one rollout per image; "
             "reconstruction error of the VAE's decoded mean image from h_t against the clean digit.", "",
             "| t | accuracy | H_t | IG_t | EIG_t | EIG/IG | MSE | BCE |",
             "|---|---|---|---|---|---|---|---|"]
    for t in range(len(g["accuracy"])):
        lines.append(f"| {t + 1} | {g['accuracy'][t]:.2%} | {g['entropy'][t]:.4f} | "
                     f"{g['ig'][t]:.4f} ± {g['ig_se'][t]:.4f} | {g['eig'][t]:.4f} ± {g['eig_se'][t]:.4f} | "
                     f"{g['eig_over_ig'][t]:.2f} | {g['recon_mse'][t]:.5f} ± {g['recon_mse_se'][t]:.5f} | "
                     f"{g['recon_bce'][t]:.4f} |")
    lines += ["", "Figures: `reconstructions.png`, `reconstruction_error.png`, `information_gain.png`, "
              "`glimpses.png`, `glimpses.gif`.", ""]
    return "\n".join(lines)
