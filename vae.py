"""The hidden-state VAE, its ELBO, its training on a frozen RAM and its checkpoints, and the
per-glimpse reconstructions it draws. The expected information gain it imagines glimpses
for lives in information.py.

Shapes follow the glossary of modules.py: B batch, T glimpses, C_in image channels, H/W the
canvas (what the RAM sees), D hidden size, Z latent size, C classes; S (alone) is the number
of imagined samples of the EIG estimator. The clean image is (c, h, w): the 28x28 digit
(1, 28, 28) of the MNIST sets, or the image itself (C_in, H, W) where the dataset has no
separate clean target (image folders: RGB or grey, H != W allowed).

The VAE reads one hidden state h_t of the RAM (with an LSTM core, h_t and its cell state
c_t: the core's whole state) and explains it as an image: q(z | h_t) is a diagonal
Gaussian, and two Bernoulli decoders share z, one for the clean image and, when the canvas
differs from it (translated / cluttered sets), one for the whole canvas.
Decoded mean images are sigmoid(logits), so they span (0, 1).
The likelihood stays Bernoulli (BCE against intensities in [0, 1]) for RGB images too: it is
the same code path for every channel count, the decoded mean is then the expected
intensity of each pixel and channel in (0, 1), and a Gaussian would need a choice of
variance that the Bernoulli does not.
"""

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from arguments import ConfigError
from faults import Stopped
from utils import AverageMeter, GlimpseMeter, atomic_save, check_matches, first_line, load_checkpoint, log_scalars

VAE_FORMAT = 1


# ----------------------------------------------------------------------------- the model

class VAEOutput(NamedTuple):
    """What the ELBO needs for hidden states h (..., D).

    mu, logvar     (..., Z)             q(z | h) = N(mu, diag exp(logvar))
    z              (..., Z)             reparameterised sample mu + exp(logvar / 2) * eps
    clean_logits   (..., c, h, w)       Bernoulli logits of the clean image
    canvas_logits  (..., C_in, H, W)    logits of the canvas; None when the canvas is the clean image
    """

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    clean_logits: torch.Tensor
    canvas_logits: Optional[torch.Tensor]


def _mlp(in_size, hidden, out_size):
    return nn.Sequential(nn.Linear(in_size, hidden), nn.ReLU(), nn.Linear(hidden, out_size))


class ConvDecoder(nn.Module):
    """z (..., Z) -> logits (..., C*H*W) through transposed convolutions: an MLP (Z -> hidden
    -> 32 x ceil(H/8) x ceil(W/8), ReLU), three ConvTranspose2d (kernel 4, stride 2; 32 -> 16
    -> 8 -> C channels, ReLU between), each doubling the map, then its top-left H x W. Each
    pixel is drawn from a local neighbourhood of the map, so a stroke can be sharp anywhere
    on a large canvas, where the MLP's one linear map per pixel blurs what it cannot place.
    Same interface as `_mlp`."""

    def __init__(self, latent_size, hidden, shape):
        super().__init__()
        self.shape = shape
        c, h, w = shape
        self.grid = (math.ceil(h / 8), math.ceil(w / 8))
        self.fc = nn.Sequential(nn.Linear(latent_size, hidden), nn.ReLU(),
                                nn.Linear(hidden, 32 * math.prod(self.grid)), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(8, c, 4, 2, 1))

    def forward(self, z):
        c, h, w = self.shape
        lead = z.shape[:-1]
        a = self.fc(z.reshape(-1, z.shape[-1])).view(-1, 32, *self.grid)  # (N, 32, h/8, w/8)
        return self.up(a)[:, :, :h, :w].reshape(*lead, c * h * w)  # (..., c*h*w)


DECODERS = ("mlp", "conv")
STATES = ("h", "hc")  # what the encoder reads: h_t, or an LSTM's h_t and c_t


def _shape(name, value):
    """value as a (channels, height, width) tuple of positive ints, or a ValueError."""
    shape = tuple(value) if isinstance(value, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"HiddenStateVAE: {name} must be 3 positive ints (channels, height, width), "
                         f"got {value!r}")
    return shape


LEGACY_KEYS = ("clean_size", "canvas_size", "canvas_channels")


def normalise_settings(settings):
    """VAE settings in the shape form {..., clean_shape, canvas_shape} (tuples), from either form.

    VAE checkpoints before image folders (all of models/*/vae.pt) hold square sizes instead:
    clean_size s -> clean_shape (1, s, s); canvas_size S, canvas_channels c -> canvas_shape
    (c, S, S). Other keys pass unchanged, so a dict of expected values (settings plus
    ram_epoch, ...) can be normalised too.
    """
    out = {k: v for k, v in settings.items() if k not in LEGACY_KEYS}
    if any(k in settings for k in LEGACY_KEYS):
        clean = settings.get("clean_size", 28)
        canvas = settings.get("canvas_size")
        out.setdefault("clean_shape", (1, clean, clean))
        out.setdefault("canvas_shape", (settings.get("canvas_channels", 1), canvas, canvas))
    out.setdefault("decoder", "mlp")  # every VAE before --vae_decoder
    out.setdefault("state", "h")  # every VAE before it read an LSTM's cell state
    for key in ("clean_shape", "canvas_shape"):
        if isinstance(out.get(key), list):  # a shape read back from JSON
            out[key] = tuple(out[key])
    return out


class HiddenStateVAE(nn.Module):
    """Encoder h_t (D) -> vae_hidden -> (mu, logvar) (Z + Z); decoders z -> vae_hidden -> logits.

    z = mu + exp(logvar / 2) * eps, eps ~ N(0, I). The clean head (clean_shape (c, h, w))
    always exists; the canvas head (canvas_shape (C_in, H, W)) exists only when the two shapes
    differ: for plain MNIST and image folders the canvas is the clean image, so
    `decode_canvas` is `decode_clean`.

    `settings` (saved in checkpoints, compared on load) keeps the keys of checkpoints made
    before image folders, {clean_size, canvas_size, canvas_channels}, whenever they can say
    it (a square (1, s, s) clean digit and a square canvas), so those runs write the same
    checkpoint as before; otherwise it holds {clean_shape, canvas_shape}. `load_vae` reads
    and compares both through `normalise_settings`.

    decoder: "mlp" (z -> vae_hidden -> pixels, the default) or "conv": a `ConvDecoder` for the
    head EIG imagines canvases from (the canvas head, or the clean head when it is the
    canvas); a separate clean head stays an MLP. Only a conv VAE says so in `settings`.

    state: what the encoder reads of the RAM's core state after a glimpse, its input being
    `state_input(h, c)`: "h" (D), or "hc" (2D): an LSTM's h_t and cell state c_t, the
    memory its h_t = o_t * tanh(c_t) shows only through the output gate. Only an "hc" VAE
    says so in `settings`.
    """

    def __init__(self, *, hidden_size, latent_size, vae_hidden, canvas_shape, clean_shape=(1, 28, 28),
                 decoder="mlp", state="h"):
        super().__init__()
        if state not in STATES:
            raise ValueError(f"HiddenStateVAE: state must be one of {', '.join(STATES)}, got {state!r}")
        if decoder not in DECODERS:
            raise ValueError(f"HiddenStateVAE: decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        for name, value in (("hidden_size", hidden_size), ("latent_size", latent_size),
                            ("vae_hidden", vae_hidden)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"HiddenStateVAE: {name} must be a positive int, got {value!r}")
        self.clean_shape = _shape("clean_shape", clean_shape)  # (c, h, w)
        self.canvas_shape = _shape("canvas_shape", canvas_shape)  # (C_in, H, W)
        self.separate_canvas = self.canvas_shape != self.clean_shape
        self.latent_size = latent_size
        self.settings = {"hidden_size": hidden_size, "latent_size": latent_size, "vae_hidden": vae_hidden}
        (c, h, w), (C_in, H, W) = self.clean_shape, self.canvas_shape
        if c == 1 and h == w and H == W:
            self.settings.update(clean_size=h, canvas_size=H, canvas_channels=C_in)
        else:
            self.settings.update(clean_shape=self.clean_shape, canvas_shape=self.canvas_shape)
        if decoder != "mlp":
            self.settings["decoder"] = decoder
        self.state = state
        if state != "h":
            self.settings["state"] = state
        self.encoder = _mlp(hidden_size * len(state), vae_hidden, 2 * latent_size)

        def head(shape, conv):
            return ConvDecoder(latent_size, vae_hidden, shape) if conv else _mlp(latent_size, vae_hidden,
                                                                                  math.prod(shape))

        conv = decoder == "conv"
        self.clean_decoder = head(self.clean_shape, conv and not self.separate_canvas)
        self.canvas_decoder = head(self.canvas_shape, conv) if self.separate_canvas else None

    @classmethod
    def from_config(cls, config, *, canvas_shape, clean_shape=(1, 28, 28)):
        """From the run's config (hidden_size, latent_size, vae_hidden, vae_decoder, core_net_type:
        an LSTM's VAE reads h and c) and the dataset's canvas (C_in, H, W) and clean image
        (c, h, w) shapes."""
        return cls(hidden_size=config.hidden_size, latent_size=config.latent_size,
                   vae_hidden=config.vae_hidden, canvas_shape=canvas_shape, clean_shape=clean_shape,
                   decoder=config.vae_decoder, state="hc" if config.core_net_type == "lstm" else "h")

    @classmethod
    def from_settings(cls, settings):
        """From a `settings` dict of either form (see `normalise_settings`), e.g. a checkpoint's."""
        return cls(**normalise_settings(settings))

    def state_input(self, h, c=None):
        """The encoder's input from the core state after a glimpse: h (..., D), or h and the LSTM
        cell state c (..., D) concatenated (..., 2D) for a "hc" VAE."""
        if self.state == "h":
            return h
        if c is None:
            raise ValueError("HiddenStateVAE: this VAE reads an LSTM's cell state c, and none was given")
        return torch.cat([h, c], -1)

    def encode(self, h):
        """(mu, logvar), each (..., Z), of q(z | h) from the state input h (..., D or 2D:
        `state_input`)."""
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar

    @staticmethod
    def reparameterise(mu, logvar, generator=None):
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I): (..., Z)."""
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + (0.5 * logvar).exp() * eps

    def decode_clean(self, z):
        """Bernoulli logits (..., c, h, w) of the clean image from z (..., Z)."""
        return self.clean_decoder(z).unflatten(-1, self.clean_shape)

    def decode_canvas(self, z):
        """Bernoulli logits (..., C_in, H, W) of the whole canvas from z (..., Z)."""
        if not self.separate_canvas:
            return self.decode_clean(z)
        return self.canvas_decoder(z).unflatten(-1, self.canvas_shape)

    def forward(self, h):
        """A `VAEOutput` for h (..., D), with one sampled z per hidden state."""
        mu, logvar = self.encode(h)
        z = self.reparameterise(mu, logvar)
        return VAEOutput(mu=mu, logvar=logvar, z=z, clean_logits=self.decode_clean(z),
                         canvas_logits=self.decode_canvas(z) if self.separate_canvas else None)


# ----------------------------------------------------------------------------- pure maths

def kl_divergence(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample: (..., Z) -> (...,).

    KL = 0.5 * sum_z (exp(logvar) + mu^2 - 1 - logvar)
    """
    return 0.5 * (logvar.exp() + mu * mu - 1.0 - logvar).sum(-1)


def _check_unit_interval(name, target):
    # BCE against a target outside [0, 1] is not a likelihood and can go negative.
    lo, hi = target.min().item(), target.max().item()
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} targets must lie in [0, 1] for a Bernoulli likelihood, got [{lo:g}, {hi:g}]")


def _bce_per_sample(logits, target):
    """sum over the last three dims of BCE-with-logits: (..., c, h, w) -> (...,)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-3).sum(-1)


def elbo_loss(*, clean_logits, clean, mu, logvar, beta, canvas_logits=None, canvas=None):
    """Negative ELBO (beta-VAE), averaged over the N samples of the batch.

    loss = mean_n [ BCE(clean_logits_n, clean_n) + BCE(canvas_logits_n, canvas_n) + beta * KL_n ]
    BCE(a, x) = -sum_pixels [x log sigmoid(a) + (1 - x) log(1 - sigmoid(a))], targets x in [0, 1]
    KL_n = kl_divergence(mu_n, logvar_n); the canvas term only when the canvas head is separate.

    clean_logits, clean (N, c, h, w); canvas_logits, canvas (N, C_in, H, W); mu, logvar (N, Z).
    Returns a dict of scalar tensors: loss, bce_clean, bce_canvas (0 without a canvas head), kl.
    """
    if (canvas_logits is None) != (canvas is None):
        raise ValueError("elbo_loss: canvas_logits and canvas must be given together")
    _check_unit_interval("clean", clean)
    bce_clean = _bce_per_sample(clean_logits, clean).mean()
    if canvas is None:
        bce_canvas = torch.zeros((), device=clean.device, dtype=clean_logits.dtype)
    else:
        _check_unit_interval("canvas", canvas)
        bce_canvas = _bce_per_sample(canvas_logits, canvas).mean()
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": bce_clean + bce_canvas + beta * kl, "bce_clean": bce_clean,
            "bce_canvas": bce_canvas, "kl": kl}


def reconstruction_errors(decoded, clean, eps=1e-6):
    """Per-image, per-glimpse reconstruction errors, each a mean over the P = c*h*w values: (B, T).

    MSE_bt = (1/P) sum_i (d_bti - x_bi)^2
    BCE_bt = -(1/P) sum_i [x_bi log d_bti + (1 - x_bi) log(1 - d_bti)], d clamped to [eps, 1 - eps]
    decoded (B, T, c, h, w) mean images in [0, 1]; clean (B, c, h, w) in [0, 1].
    Returns (mse, bce), each (B, T).
    """
    _check_unit_interval("clean", clean)
    x = clean.unsqueeze(1).expand_as(decoded)  # (B, T, c, h, w)
    mse = (decoded - x).pow(2).flatten(2).mean(-1)  # (B, T)
    d = decoded.clamp(eps, 1.0 - eps)
    bce = F.binary_cross_entropy(d, x, reduction="none").flatten(2).mean(-1)  # (B, T)
    return mse, bce


def glimpse_batch(h, clean, canvas=None):
    """Flatten (B, T) into B*T training pairs, row b*T + t holding h_t of image b.

    h (B, T, D) -> (B*T, D); clean (B, c, h, w) -> (B*T, c, h, w) repeated T times per image;
    canvas (B, C_in, H, W) -> (B*T, C_in, H, W) likewise (None stays None).
    """
    B, T = h.shape[:2]

    def repeat(x):
        return None if x is None else x.unsqueeze(1).expand(B, T, *x.shape[1:]).reshape(B * T, *x.shape[1:])

    return h.reshape(B * T, -1), repeat(clean), repeat(canvas)  # (B*T, D), (B*T, c, h, w), ...


# ----------------------------------------------------------------------------- the frozen RAM

@torch.no_grad()
def hidden_states(model, x, num_glimpses):
    """The frozen RAM's rollout of x (B, C_in, H, W) over T glimpses, without gradients.

    Puts the model in eval mode; its parameters are only read. Returns the `Rollout`
    (h (B, T, D), logits (B, T, C), l (B, T, 2), ...).
    """
    model.eval()
    return model.rollout(x, num_glimpses)


@torch.no_grad()
def decoded_per_glimpse(vae, h):
    """Mean clean images sigmoid(decode_clean(mu(h_t))) from the posterior mean, for every h_t.

    h (B, T, D or 2D: the VAE's `state_input`) -> (B, T, c, h, w) in (0, 1).
    """
    mu, _ = vae.encode(h)  # (B, T, Z)
    return torch.sigmoid(vae.decode_clean(mu))  # (B, T, c, h, w)


# ----------------------------------------------------------------------------- training

def _to(device, *tensors):
    return [t.to(device, non_blocking=True) for t in tensors]


def _vae_terms(vae, model, x, x_clean, *, num_glimpses, beta):
    """ELBO terms on the hidden states of every glimpse of the frozen RAM's rollout of x,
    and the VAE's input from that rollout (B, T, D or 2D: `state_input`)."""
    rollout = hidden_states(model, x, num_glimpses)
    h = vae.state_input(rollout.h, rollout.c)  # (B, T, D or 2D)
    flat, clean, canvas = glimpse_batch(h, x_clean, x if vae.separate_canvas else None)
    out = vae(flat)
    terms = elbo_loss(clean_logits=out.clean_logits, clean=clean, mu=out.mu, logvar=out.logvar,
                      beta=beta, canvas_logits=out.canvas_logits, canvas=canvas)
    return terms, h


@torch.no_grad()
def evaluate_vae(vae, model, loader, *, num_glimpses, beta, device):
    """Mean ELBO terms over a loader of (x, x_clean, y), and the reconstruction error after
    each glimpse from the posterior mean: {loss, bce_clean, bce_canvas, kl: float,
    mse_t, bce_t: list of T floats, count: images}."""
    vae.eval()
    meters = {k: AverageMeter() for k in ("loss", "bce_clean", "bce_canvas", "kl")}
    errors = GlimpseMeter()
    n = 0
    for x, x_clean, _ in tqdm(loader, desc="vae valid", leave=False, unit="batch", dynamic_ncols=True):
        x, x_clean = _to(device, x, x_clean)
        terms, h = _vae_terms(vae, model, x, x_clean, num_glimpses=num_glimpses, beta=beta)
        for key, meter in meters.items():
            meter.update(terms[key].item(), x.shape[0] * num_glimpses)
        mse, bce = reconstruction_errors(decoded_per_glimpse(vae, h), x_clean)  # (B, T) each
        errors.update(mse_t=mse, bce_t=bce)
        n += x.shape[0]
    result = {k: m.avg for k, m in meters.items()}
    result.update(errors.means() if n else {"mse_t": [0.0] * num_glimpses, "bce_t": [0.0] * num_glimpses})
    result["count"] = n
    return result


def train_vae(vae, model, loaders, *, num_glimpses, epochs, lr, beta, device, writer=None,
              start_epoch=0, optimizer=None, on_epoch_end=None):
    """Train the VAE on h_1 .. h_T of every glimpse of the frozen RAM, epochs start_epoch+1 .. epochs.

    Each batch (x, x_clean, y) of loaders["train"] gives B*T pairs (h_t of image b, clean image
    b [, canvas b]), from a fresh rollout whose locations are sampled by the policy as in
    training; the RAM is in eval mode under no_grad, so its parameters never change.
    `optimizer` (to resume) defaults to Adam(vae.parameters(), lr). After each epoch the mean
    train terms and, when loaders has "valid", `evaluate_vae` on it are logged to `writer`
    under vae/train_* and vae/val_* (plus vae/val_mse/glimpse_t), then
    on_epoch_end(epoch, metrics) is called (e.g. to save a checkpoint).

    Returns a list of per-epoch dicts {epoch, train: {loss, bce_clean, bce_canvas, kl}, valid}.
    """
    model.eval()
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr) if optimizer is None else optimizer
    history = []
    for epoch in range(start_epoch + 1, epochs + 1):
        vae.train()
        meters = {k: AverageMeter() for k in ("loss", "bce_clean", "bce_canvas", "kl")}
        bar = tqdm(loaders["train"], desc=f"vae epoch {epoch}", leave=False, unit="batch", dynamic_ncols=True)
        for i, (x, x_clean, _) in enumerate(bar):
            x, x_clean = _to(device, x, x_clean)
            terms, _ = _vae_terms(vae, model, x, x_clean, num_glimpses=num_glimpses, beta=beta)
            values = {key: terms[key].item() for key in meters}
            if not all(map(math.isfinite, values.values())):
                raise Stopped(f"the VAE loss became {values['loss']} at epoch {epoch}, step {i + 1}: "
                              f"stopped before the update; the VAE checkpoint of epoch {epoch - 1} is unchanged")
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            n = x.shape[0] * num_glimpses
            for key, meter in meters.items():
                meter.update(values[key], n)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{meters['loss'].avg:.2f}", kl=f"{meters['kl'].avg:.2f}")
        metrics = {"epoch": epoch, "train": {k: m.avg for k, m in meters.items()}}
        if "valid" in loaders:
            metrics["valid"] = evaluate_vae(vae, model, loaders["valid"], num_glimpses=num_glimpses,
                                            beta=beta, device=device)
        if writer is not None:
            log_scalars(writer, "vae", {f"train_{k}": v for k, v in metrics["train"].items()}, epoch)
            log_scalars(writer, "vae", {f"val_{k}": v for k, v in metrics.get("valid", {}).items()}, epoch)
        line = (f"vae epoch {epoch}/{epochs}: train loss {metrics['train']['loss']:.2f} "
                f"(kl {metrics['train']['kl']:.2f})")
        if "valid" in metrics:
            line += f" | valid loss {metrics['valid']['loss']:.2f}"
        tqdm.write(line)
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    return history


# ----------------------------------------------------------------------------- checkpoints

def save_vae(path, vae, optimizer, epoch, config_dict, rng=None):
    """Atomically save {format, settings, config, epoch, vae, optimizer, rng} to path.

    settings: the VAE's constructor arguments; config_dict: the run's settings (e.g.
    vars(config)), plain values only; rng: optionally utils.rng_state(...) for an exact resume.
    """
    atomic_save({
        "format": VAE_FORMAT,
        "settings": dict(vae.settings),
        "config": dict(config_dict),
        "epoch": epoch,
        "vae": vae.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "rng": rng,
    }, path)


def load_vae(path, device, *, expected):
    """Load a `save_vae` checkpoint: (HiddenStateVAE on device, the checkpoint dict).

    `expected` maps names to the values this run needs; each is looked up in the saved VAE
    settings, then in the saved config. Both are compared in the shape form of
    `normalise_settings`, so a checkpoint that stores square sizes (every one made before
    image folders) matches a VAE built today from the same shapes. A missing or corrupt
    file, another format, or any difference raises ConfigError with a one-line message.
    """
    state = load_checkpoint(path, kind="VAE", version=VAE_FORMAT)
    settings, config = normalise_settings(state.get("settings") or {}), state.get("config") or {}
    check_matches(f"VAE checkpoint {path} does not match this run", {**config, **settings},
                  normalise_settings(expected))
    try:
        vae = HiddenStateVAE.from_settings(settings)
        vae.load_state_dict(state["vae"])
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"VAE checkpoint {path} does not fit a HiddenStateVAE "
                          f"({type(err).__name__}: {first_line(err)})")
    return vae.to(device), state
