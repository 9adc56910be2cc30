"""The Trainer: train and validate one run, its checkpoints, TensorBoard logs and glimpse plots.

The loss terms come from losses.py; testing and explaining a trained run is explain.py's.
"""

import glob
import json
import math
import os

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import distributed
import folders
from arguments import LEGACY_DEFAULTS, MODEL_FIELDS, RESUME_MAY_CHANGE, TRAINING_FIELDS, ConfigError
from data_loader import redraw_canvases
from faults import SignalGuard, Stopped, fault_point
from information import glimpse_statistics
from losses import hybrid_loss, loss_settings
from model import RecurrentAttention
from plots import plot_glimpses
from utils import (AverageMeter, GlimpseMeter, atomic_save, atomic_write, check_matches, first_line, load_checkpoint,
                   log_scalars, precision_context, rng_state, seed_everything, set_rng_state)

CHECKPOINT_FORMAT = 1


def mc_probabilities(model, x, num_glimpses, M, *, policy_mean=False):
    """Class probabilities (B, T, C) after each glimpse, averaged over M rollouts per image
    (with policy_mean, the one deterministic rollout at l_t = mu_t)."""
    B = x.shape[0]
    M = 1 if policy_mean else M
    logits = model.rollout(x.repeat(M, 1, 1, 1), num_glimpses, policy_mean=policy_mean).logits  # (M*B, T, C)
    return logits.softmax(-1).view(M, B, *logits.shape[1:]).mean(0)  # (B, T, C)


def cosine_lr(init_lr, epoch, epochs):
    """lr of epoch 1..epochs on a half cosine from init_lr towards 0:
    init_lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2 (torch's CosineAnnealingLR, T_max = epochs)."""
    return init_lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


# A run of a constant std, met by a command whose std anneals (MNIST's default since
# 2026-11-30 night): say how to ask for the constant std.
STD_HINT = {"std_final": lambda saved: (f" (its std was constant: give --std {saved['std']} alone)"
                                        if saved.get("std_final") is None else "")}


def annealed_std(std, std_final, epoch, epochs):
    """Location std of training epoch 1..epochs: std throughout when std_final is None, else a
    half cosine from std (epoch 1) to std_final (the last epoch, whose policy is the one
    validated and tested): std_final + (std - std_final) * (1 + cos(pi * (epoch - 1) / (epochs - 1))) / 2."""
    if std_final is None:
        return std
    frac = (epoch - 1) / (epochs - 1) if epochs > 1 else 1.0
    return std_final + (std - std_final) * (1 + math.cos(math.pi * min(frac, 1.0))) / 2


def glimpse_means(meter):
    """Per-glimpse means of a GlimpseMeter as lists, correct_t renamed accuracy_t; accuracy = accuracy_T."""
    metrics = meter.means()
    metrics["accuracy_t"] = metrics.pop("correct_t")
    metrics["accuracy"] = metrics["accuracy_t"][-1]
    return metrics


# ----------------------------------------------------------------------------- the loops

class Trainer:
    """Trains and validates one run; owns its model, optimizer, checkpoints, logs and plots."""

    def __init__(self, config, data):
        self.config = config
        self.data = data
        self.device = torch.device("cuda", torch.cuda.current_device()) if config.use_gpu else torch.device("cpu")
        self.model = RecurrentAttention.from_config(
            config, in_channels=data.in_channels, num_classes=data.num_classes).to(self.device)
        # Under torchrun: DDP broadcasts rank 0's initial weights and averages the gradients
        # over the ranks in backward; each rank then draws its own locations (seed + rank).
        self.ddp = None
        if distributed.active():
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.actor_weight == 0 or config.critic_weight == 0)
            seed_everything(config.random_seed + distributed.rank())
        self.say = print if distributed.is_main() else (lambda *args, **kwargs: None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.init_lr)
        # cosine: the lr is a function of (epoch, --epochs), set before each epoch, so a run
        # resumed with a larger --epochs follows the longer schedule; plateau: torch's scheduler.
        self.scheduler = None if config.lr_schedule == "cosine" else torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=0.1, patience=config.lr_patience)
        self.run_dir = os.path.join(config.ckpt_dir, config.run_name)
        # best_acc starts below any accuracy, so the first epoch always writes best.pt.
        self.epoch, self.best_acc, self.counter = 0, -1.0, 0
        self.guard = None  # while training: the SignalGuard whose signal stops the loops

    # -- checkpoints

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def save(self, is_best):
        """latest.pt (and best.pt) of this point; under torchrun rank 0 writes them, with the
        RNG states of every rank."""
        rngs = distributed.gather_objects(rng_state(self.data.generator))
        if not distributed.is_main():
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": vars(self.config),
            "epoch": self.epoch,
            "best_acc": self.best_acc,
            "counter": self.counter,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": rngs[0],
            "rng_ranks": rngs if len(rngs) > 1 else None,
            "world_size": len(rngs),
        }
        atomic_save(state, self.path("latest.pt"))
        fault_point("save")
        if is_best:
            atomic_save(state, self.path("best.pt"))

    def load(self, name, fields=MODEL_FIELDS):
        """Load checkpoint `name` of this run, checking that `fields` match the command line."""
        path = self.path(name)
        state = load_checkpoint(path, kind="RAM", version=CHECKPOINT_FORMAT)
        check_matches(f"checkpoint {path} does not match the command line", {**LEGACY_DEFAULTS, **state["config"]},
                      {k: getattr(self.config, k) for k in fields}, hints=STD_HINT)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ConfigError(f"checkpoint {path} does not fit the model: {first_line(err)}")
        return state

    def resume(self):
        """Continue from latest.pt: a changed setting of what or how the run learns is refused;
        one of RESUME_MAY_CHANGE (--epochs, --train_patience, ...) is used, and said."""
        fields = MODEL_FIELDS + TRAINING_FIELDS + (("lr_patience",) if self.scheduler is not None else ())
        state = self.load("latest.pt", fields)
        for name in RESUME_MAY_CHANGE:
            saved, now = state["config"].get(name), getattr(self.config, name)
            if saved != now:
                self.say(f"[*] --{name} was {saved} for this run, now {now}: using {now}")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_acc, self.counter = state["epoch"], state["best_acc"], state["counter"]
        saved, world, rank = state.get("world_size", 1), distributed.world_size(), distributed.rank()
        if saved == world:
            set_rng_state(state["rng_ranks"][rank] if world > 1 else state["rng"], self.data.generator)
        else:
            set_rng_state(state["rng"], self.data.generator)
            if rank:
                seed_everything(self.config.random_seed + rank + 1000 * self.epoch)
            self.say(f"[*] run {self.config.run_name} was trained on {saved} processes, continued on {world}: "
                     f"the weights and optimizer continue, the shuffle and location sampling are not "
                     f"those of an unbroken run")

    # -- training

    def finished(self):
        """Why a resumed run has nothing left to train (and how to continue it), or None."""
        config = self.config
        if self.counter >= config.train_patience:
            return (f"run {config.run_name} stopped early after epoch {self.epoch}: no validation gain for "
                    f"{self.counter} epochs (--train_patience {config.train_patience}); raise "
                    f"--train_patience (and --epochs) to continue it")
        if self.epoch >= config.epochs:
            return (f"run {config.run_name} is already trained for {self.epoch} epochs (--epochs "
                    f"{config.epochs}); raise --epochs to continue it")
        return None

    def where_to_resume(self):
        """The end of an interruption message: what the checkpoints hold, how to continue."""
        if self.epoch == 0 and not os.path.exists(self.path("latest.pt")):
            return "no checkpoint was written yet"
        return (f"{self.path('latest.pt')} holds epoch {self.epoch}; continue with the same command "
                f"and --resume=True")

    def train(self):
        """Train up to --epochs (or early stop). A first SIGINT/SIGTERM stops at the end of the
        current step and keeps the last epoch's checkpoints; a non-finite loss or gradient
        stops before the step. Either way nothing written is half a file."""
        config = self.config
        if config.resume:
            self.resume()
            self.say(f"[*] resumed {config.run_name} after epoch {self.epoch} "
                     f"(best validation accuracy {self.best_acc:.2%})")
            done = self.finished()
            if done:
                self.say(f"[*] {done}: nothing trained, nothing written")
                return
        elif os.path.exists(self.path("latest.pt")):
            raise ConfigError(f"run {config.run_name} already has checkpoints in {self.run_dir}: "
                              f"continue it with --resume=True, or pick another --run_name")
        writer = None
        if distributed.is_main():
            stale = glob.glob(os.path.join(glob.escape(self.run_dir), ".tmp_*"))
            for path in stale:  # left by a run killed (kill -9) inside a checkpoint write
                os.remove(path)
            if stale:
                print(f"[*] removed {len(stale)} temporary file(s) a killed run left in {self.run_dir}")
            text = json.dumps(vars(config), indent=2).encode()
            atomic_write(self.path("config.json"), lambda f: f.write(text))
            if self.data.record is not None:  # a folder run's new split: what resume and test read
                folders.save_record(self.path(folders.SPLIT_FILE), self.data.record)
            # purge_step: events of steps after the checkpoint (an interrupted epoch) are dropped.
            writer = SummaryWriter(os.path.join(config.logs_dir, config.run_name), purge_step=self.epoch + 1)
        try:
            with SignalGuard(defer=True) as self.guard:
                self.train_epochs(writer)
        finally:
            self.guard = None
            if writer is not None:
                writer.close()

    def train_epochs(self, writer):
        config = self.config
        if writer is not None:
            writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(vars(config).items())),
                            self.epoch)
        n_train = len(self.data.loaders["train"].dataset)
        n_valid = len(self.data.loaders["valid"].dataset)
        world = distributed.world_size()
        self.say(f"[*] train on {n_train} images, validate on {n_valid}; run {config.run_name}"
                 + (f"; data-parallel on {world} processes, {config.batch_size} images per process "
                    f"and step" if world > 1 else ""))
        while self.epoch < config.epochs:
            epoch = self.epoch + 1
            if self.scheduler is None:
                for group in self.optimizer.param_groups:
                    group["lr"] = cosine_lr(config.init_lr, epoch, config.epochs)
            lr = self.optimizer.param_groups[0]["lr"]
            std = annealed_std(config.std, config.std_final, epoch, config.epochs)
            train = self.train_one_epoch(epoch, std)
            valid = self.evaluate("valid", epoch=epoch)
            self.epoch = epoch
            if self.scheduler is not None:
                self.scheduler.step(valid["accuracy"])
            is_best = valid["accuracy"] > self.best_acc
            if is_best:
                self.best_acc, self.counter = valid["accuracy"], 0
            else:
                self.counter += 1
            if writer is not None:
                log_scalars(writer, "train", train, self.epoch)
                log_scalars(writer, "val", valid, self.epoch)
                writer.add_scalar("train/lr", lr, self.epoch)
                writer.add_scalar("train/policy_std", std, self.epoch)
            self.say(f"epoch {self.epoch}/{config.epochs}: train loss {train['loss']:.3f} "
                  f"acc {train['accuracy']:.2%} | valid acc {valid['accuracy']:.2%} "
                  f"(error {1 - valid['accuracy']:.2%}){' [best]' if is_best else ''} | lr {lr:.2g}"
                  + (f" | std {std:.3g}" if config.std_final is not None else ""))
            if config.plot_freq and self.epoch % config.plot_freq == 0 and distributed.is_main():
                self.plot(os.path.join(config.plot_dir, config.run_name, f"epoch_{self.epoch}.png"))
            self.save(is_best)
            if writer is not None:
                writer.flush()
            self.stop_if_asked(f"after epoch {self.epoch}: {self.where_to_resume()}")
            if self.counter >= config.train_patience:
                self.say(f"[!] no validation gain for {self.counter} epochs: stopping")
                break

    def stop_if_asked(self, where):
        """Stop (Interrupted) when a signal came; under torchrun when one came to any rank, so
        that every rank stops at the same step."""
        if self.guard is None:
            return
        if distributed.active():
            self.guard.signum = distributed.max_over_ranks(self.guard.signum or 0) or None
        self.guard.stop_if_asked(where)

    def check_finite(self, epoch, step, values):
        """Stop before the optimizer step when a loss term or a gradient is not finite,
        naming it; clip the gradient to --max_grad_norm when set."""
        where = (f"at epoch {epoch}, step {step}: stopped before the update; "
                 f"{self.where_to_resume()} (lower --init_lr or set --max_grad_norm)")
        for name in ("nll", "baseline", "reinforce", "loss"):
            if not math.isfinite(values[name]):
                raise Stopped(f"the {name} loss became {values[name]} {where}")
        params = [(name, p) for name, p in self.model.named_parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for _, p in params]))
        if not torch.isfinite(norm):
            name = next(name for name, p in params if not torch.isfinite(p.grad).all())
            raise Stopped(f"the gradient of {name} became non-finite {where}")
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], self.config.max_grad_norm)

    def train_one_epoch(self, epoch, std=None):
        """One pass over the training set with location std `std` (default: the test policy's);
        returns epoch means, per-glimpse ones as lists. The model keeps the test policy's std
        outside it, so validation, plots and tests always use that."""
        final = self.model.locator.std
        self.model.locator.std = final if std is None else std
        try:
            return self._train_one_epoch(epoch)
        finally:
            self.model.locator.std = final

    def _train_one_epoch(self, epoch):
        config, model = self.config, self.model
        model.train()
        meters = {k: AverageMeter() for k in ("loss", "nll", "baseline", "reinforce", "reward")}
        glimpses = GlimpseMeter()
        loader = self.data.loaders["train"]
        redraw_canvases(loader.dataset, config, epoch)
        if self.data.shard is not None:
            self.data.shard.set_epoch(epoch)  # each epoch its own shuffle, the same on every rank
        net = self.model if self.ddp is None else self.ddp
        bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, unit="batch", dynamic_ncols=True,
                   disable=not distributed.is_main())
        for i, (x, _, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with precision_context(config.precision, self.device):
                out = net(x, config.num_glimpses)
                terms = hybrid_loss(out, y, **loss_settings(config))
            values = {key: terms[key].item() for key in meters}
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.check_finite(epoch, i + 1, values)
            self.optimizer.step()

            with torch.no_grad():
                B, T = y.shape[0], config.num_glimpses
                # The spread of the policy means over the batch is a batch statistic: every
                # image of the batch carries it, so its epoch mean weighs batches by size.
                spread = out.mu.std(0).mean(-1) if B > 1 else torch.zeros(T, device=out.mu.device)  # (T,)
                glimpses.update(**glimpse_statistics(out.logits.softmax(-1), y),
                                reward_t=terms["reward_t"].expand(B, T),
                                advantage_t=terms["advantage_t"].expand(B, T),
                                mu_spread_t=spread.expand(B, T))
                for key, meter in meters.items():
                    meter.update(values[key], B)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{meters['loss'].avg:.3f}", acc=f"{glimpses.mean('correct_t')[-1]:.1%}")
            fault_point("train_step")
            self.stop_if_asked(f"during epoch {epoch} (step {i + 1} of {len(loader)}): {self.where_to_resume()}")
        metrics = {k: m.avg for k, m in meters.items()}
        metrics.update(glimpse_means(glimpses))
        return metrics

    @torch.no_grad()
    def evaluate(self, split, *, M=None, policy_mean=False, epoch=None):
        """Accuracy, entropy H_t and information gain IG_t after each glimpse, and the final
        NLL, on a split; class probabilities averaged over M rollouts per image (default
        --M), or from the policy mean's one rollout. `epoch`: the epoch it validates."""
        config, model = self.config, self.model
        M = config.M if M is None else M
        model.eval()
        glimpses = GlimpseMeter()
        nll, n = 0.0, 0
        for x, _, y in tqdm(self.data.loaders[split], desc=split, leave=False, unit="batch",
                            disable=not distributed.is_main()):
            x, y = x.to(self.device), y.to(self.device)
            with precision_context(config.precision, self.device):
                probs = mc_probabilities(model, x, config.num_glimpses, M, policy_mean=policy_mean)  # (B, T, C)
            glimpses.update(**glimpse_statistics(probs, y))
            nll += -probs[:, -1].gather(1, y[:, None]).clamp_min(1e-12).log().sum().item()
            n += y.shape[0]
            fault_point(f"{split}_step")
            # Under torchrun the ranks' shards may differ by one batch, so the ranks agree on
            # a stop only once, after the loop (a collective per batch would hang).
            if not distributed.active():
                self.stop_if_asked(f"while validating epoch {epoch}: {self.where_to_resume()}")
        self.stop_if_asked(f"while validating epoch {epoch}: {self.where_to_resume()}")
        # Under torchrun each rank saw its own shard: the sums over the ranks are the split's.
        glimpses.combine(distributed.sum_over_ranks)
        nll, n = distributed.sum_over_ranks(torch.tensor([nll, n], dtype=torch.float64)).tolist()
        metrics = glimpse_means(glimpses)
        metrics.update(nll=nll / n, count=int(n))
        return metrics

    @torch.no_grad()
    def plot(self, path):
        """Glimpse paths of the first validation images."""
        x, _, y = next(iter(self.data.loaders["valid"]))
        x = x[:9].to(self.device)
        out = self.model.rollout(x, self.config.num_glimpses)
        plot_glimpses(x, out.l, path, sides=self.model.retina.sides, labels=y[:9],
                      preds=out.logits[:, -1].argmax(-1), classes=self.data.classes)
