"""Rewards, returns and losses (pure functions), the train/validate/test loops, checkpoints, logs."""

import json
import math
import os

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from arguments import MODEL_FIELDS, ConfigError
from model import RecurrentAttention
from utils import (AverageMeter, atomic_save, load_checkpoint, plot_glimpses, rng_state,
                   set_rng_state)

CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------- pure maths

def rewards(logits, y):
    """Paper reward r (B, T): r_T = 1[argmax p_T == y], r_t = 0 for t < T.

    logits (B, T, C), y (B,).
    """
    r = torch.zeros(logits.shape[:2], device=logits.device)  # (B, T)
    r[:, -1] = (logits[:, -1].argmax(-1) == y).float()
    return r


def returns(r):
    """Return-to-go G_t = sum_{k >= t} r_k: (B, T) -> (B, T)."""
    return r.flip(1).cumsum(1).flip(1)


def reinforce_loss(log_pi, advantage):
    """-sum_t log pi_t * A_t, averaged over the batch; A is treated as a constant.

    Its gradient with respect to the policy mean is -(l - mu) / std^2 * A per step.
    """
    return -(log_pi * advantage.detach()).sum(1).mean()


def baseline_loss(b, G):
    """Mean squared error of the baseline b_t against the return G_t (B, T)."""
    return F.mse_loss(b, G.detach())


def classification_loss(logits, y):
    """Cross-entropy of the final glimpse's prediction: -log p_T(y), batch mean."""
    return F.cross_entropy(logits[:, -1], y)


def hybrid_loss(out, y, *, actor_weight):
    """The paper's hybrid loss: NLL + baseline MSE + actor_weight * REINFORCE.

    Advantage A_t = G_t - b_t with b_t detached (the baseline only reduces variance).
    Returns a dict of scalar tensors: loss, nll, baseline, reinforce, reward.
    """
    r = rewards(out.logits, y)
    G = returns(r)
    terms = {
        "nll": classification_loss(out.logits, y),
        "baseline": baseline_loss(out.b, G),
        "reinforce": reinforce_loss(out.log_pi, G - out.b.detach()),
    }
    terms["loss"] = terms["nll"] + terms["baseline"] + actor_weight * terms["reinforce"]
    terms["reward"] = r.sum(1).mean()
    return terms


def mc_probabilities(model, x, num_glimpses, M):
    """Class probabilities (B, T, C) after each glimpse, averaged over M rollouts per image."""
    B = x.shape[0]
    out = model.rollout(x.repeat(M, 1, 1, 1), num_glimpses)
    probs = out.logits.softmax(-1).view(M, B, *out.logits.shape[1:]).mean(0)  # (B, T, C)
    return probs, out


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
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=0.1, patience=config.lr_patience)
        self.run_dir = os.path.join(config.ckpt_dir, config.run_name)
        self.epoch, self.best_acc, self.counter = 0, 0.0, 0

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

    def load(self, name):
        """Load checkpoint `name` of this run, checking it matches the command line."""
        path = self.path(name)
        state = load_checkpoint(path, self.device)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint {path} is not a RAM checkpoint of format {CHECKPOINT_FORMAT}")
        saved = state["config"]
        differ = [f"{k}={saved.get(k)!r} in the checkpoint but {getattr(self.config, k)!r} here"
                  for k in MODEL_FIELDS if saved.get(k) != getattr(self.config, k)]
        if differ:
            raise ConfigError(f"checkpoint {path} does not match the command line: " + "; ".join(differ))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ConfigError(f"checkpoint {path} does not fit the model: {str(err).splitlines()[0]}")
        return state

    def resume(self):
        state = self.load("latest.pt")
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

        while self.epoch < config.epochs:
            self.epoch += 1
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_one_epoch()
            valid = self.evaluate("valid")
            self.scheduler.step(valid["accuracy"])
            is_best = valid["accuracy"] > self.best_acc
            if is_best:
                self.best_acc, self.counter = valid["accuracy"], 0
            else:
                self.counter += 1
            for key, value in train.items():
                writer.add_scalar(f"train/{key}", value, self.epoch)
            writer.add_scalar("train/lr", lr, self.epoch)
            writer.add_scalar("val/accuracy", valid["accuracy"], self.epoch)
            writer.add_scalar("val/nll", valid["nll"], self.epoch)
            for t, acc in enumerate(valid["accuracy_t"], 1):
                writer.add_scalar(f"val/accuracy_glimpse_{t}", acc, self.epoch)
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
        config, model = self.config, self.model
        model.train()
        meters = {k: AverageMeter() for k in ("loss", "nll", "baseline", "reinforce", "reward", "accuracy")}
        loader = self.data.loaders["train"]
        bar = tqdm(loader, desc=f"epoch {self.epoch}", leave=False, unit="batch", dynamic_ncols=True)
        for i, (x, _, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            out = model.rollout(x, config.num_glimpses)
            terms = hybrid_loss(out, y, actor_weight=config.actor_weight)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()

            n = y.shape[0]
            terms["accuracy"] = (out.logits[:, -1].argmax(-1) == y).float().mean()
            for key, meter in meters.items():
                meter.update(terms[key].item(), n)
            if not math.isfinite(meters["loss"].avg):
                raise FloatingPointError(f"the loss became {meters['loss'].avg} at epoch {self.epoch}")
            if i % 20 == 0:
                bar.set_postfix(loss=f"{meters['loss'].avg:.3f}", acc=f"{meters['accuracy'].avg:.1%}")
        return {k: m.avg for k, m in meters.items()}

    @torch.no_grad()
    def evaluate(self, split):
        """Accuracy (final and after each glimpse) and NLL on a split, M rollouts per image."""
        config, model = self.config, self.model
        model.eval()
        correct = torch.zeros(config.num_glimpses)
        nll, n = 0.0, 0
        for x, _, y in tqdm(self.data.loaders[split], desc=split, leave=False, unit="batch"):
            x, y = x.to(self.device), y.to(self.device)
            probs, _ = mc_probabilities(model, x, config.num_glimpses, config.M)  # (B, T, C)
            correct += (probs.argmax(-1) == y[:, None]).sum(0).cpu()
            nll += -probs[:, -1].gather(1, y[:, None]).clamp_min(1e-12).log().sum().item()
            n += y.shape[0]
        accuracy_t = (correct / n).tolist()
        return {"accuracy": accuracy_t[-1], "accuracy_t": accuracy_t, "nll": nll / n, "count": n}

    @torch.no_grad()
    def plot(self, path):
        """Glimpse paths of the first validation images."""
        x, _, y = next(iter(self.data.loaders["valid"]))
        x = x[:9].to(self.device)
        out = self.model.rollout(x, self.config.num_glimpses)
        plot_glimpses(x, out.l, path, sides=self.model.retina.sides, labels=y[:9],
                      preds=out.logits[:, -1].argmax(-1))

    # -- testing

    def test(self):
        config = self.config
        state = self.load("best.pt")
        print(f"[*] loaded {self.path('best.pt')} (epoch {state['epoch']}, "
              f"validation accuracy {state['best_acc']:.2%})")
        metrics = self.evaluate("test")
        print(f"test accuracy {metrics['accuracy']:.2%} (error {1 - metrics['accuracy']:.2%}) "
              f"on {metrics['count']} images, M={config.M}")
        print("accuracy after glimpse t: " + "  ".join(
            f"t={t}: {a:.2%}" for t, a in enumerate(metrics["accuracy_t"], 1)))
        report_dir = os.path.join(config.report_dir, config.run_name)
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, "metrics.json"), "w") as f:
            json.dump({"run": config.run_name, "epoch": state["epoch"], "M": config.M,
                       "test": metrics}, f, indent=2)
        return metrics
