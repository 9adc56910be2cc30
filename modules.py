"""The RAM's parts, one class per box of Fig. 1 in Mnih et al. (2014).

Shape glossary (used in every comment and docstring of the project):
    B batch, T glimpses, C_in image channels, H/W image height/width, P patch side (g),
    K scales (patches per glimpse), D hidden size, Z latent size, C classes.

Locations l = (x, y) live in [-1, 1]^2: (0, 0) is the image centre, (-1, -1) the
top-left corner; x indexes columns, y rows.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def pixel_centre(l, half):
    """The retina's rule for the patch centre in pixels: floor((l + 1) * half), half = (W/2, H/2).

    l (..., 2) -> (..., 2) (column, row), as floats holding integers.
    """
    return torch.floor((l + 1) * half)


def box_filter(x, m):
    """Mean of every m x m window of x (B, C_in, H, W), stride 1, as (B, C_in, H, W).

    out[..., r, c] = mean(x[..., r:r+m, c:c+m]); the last m - 1 rows and columns, whose
    windows would leave the image, are zero. Separable shifted sums: much faster on CPU
    than avg_pool2d with stride 1.
    """
    H, W = x.shape[-2:]
    rows = x[..., : H - m + 1, :].clone()
    for i in range(1, m):
        rows += x[..., i: H - m + 1 + i, :]
    box = rows[..., : W - m + 1].clone()
    for j in range(1, m):
        box += rows[..., j: W - m + 1 + j]
    return F.pad(box / (m * m), (0, m - 1, 0, m - 1))


class Retina(nn.Module):
    """Glimpse sensor rho(x_t, l): K square patches centred on l, the i-th of side
    g * s**i, each average-pooled to g x g, concatenated; pixels outside read as zero.

    The patch centre in pixels is floor((l + 1) / 2 * W) (and H for y); patch i covers
    [centre - S_i // 2, centre - S_i // 2 + S_i) with S_i = g * s**i.

    Batched with no Python loop over images: `prepare` pads the image once and box-filters
    it at every scale (an s**i x s**i mean with stride 1), so a pooled patch is just its
    g x g samples at stride s**i; `forward` then gathers all B x K x g x g values in one
    indexed op.
    """

    def __init__(self, *, patch_size, num_patches, glimpse_scale):
        super().__init__()
        self.g, self.k, self.s = patch_size, num_patches, glimpse_scale
        self.sides = [patch_size * glimpse_scale ** i for i in range(num_patches)]
        self.pad = math.ceil(self.sides[-1] / 2)

    @property
    def out_size(self):
        """Length of phi per image channel: K * g * g."""
        return self.k * self.g * self.g

    def prepare(self, x):
        """Precompute, once per rollout, what every glimpse of `x` (B, C_in, H, W) needs.

        Returns a dict with the box-filtered planes flattened to (B, K*C_in*Hp*Wp), the
        constant in-patch offsets (K*C_in*g*g,), and the scalars that map l to a flat index.
        """
        B, C_in, H, W = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))  # (B, C_in, Hp, Wp)
        Hp, Wp = H + 2 * p, W + 2 * p
        planes = [padded if self.s ** i == 1 else box_filter(padded, self.s ** i) for i in range(self.k)]
        flat = torch.stack(planes, 1).reshape(B, -1)  # (B, K*C_in*Hp*Wp)

        device = x.device
        offsets = []
        for i, side in enumerate(self.sides):
            m = self.s ** i
            grid = torch.arange(self.g, device=device) * m
            inside = grid[:, None] * Wp + grid[None, :]  # (g, g): row-major samples of the patch
            start = (p - side // 2) * (Wp + 1)  # top-left of the patch relative to the centre pixel
            for c in range(C_in):
                plane = (i * C_in + c) * Hp * Wp
                offsets.append((plane + start + inside).reshape(-1))
        return {
            "flat": flat,
            "offsets": torch.cat(offsets),  # (K*C_in*g*g,)
            "half": torch.tensor([W / 2.0, H / 2.0], device=device, dtype=x.dtype),
            "stride": torch.tensor([1.0, float(Wp)], device=device, dtype=x.dtype),
        }

    @staticmethod
    def centre_index(l, half, stride):
        """Flat index (B,) of the centre pixel in a padded plane: column + Wp * row."""
        return (pixel_centre(l, half) @ stride).long()

    def forward(self, prepared, l):
        """phi = rho(x, l): (B, K*C_in*g*g) from `prepare(x)` and l (B, 2)."""
        base = self.centre_index(l, prepared["half"], prepared["stride"])  # (B,)
        index = base[:, None] + prepared["offsets"]  # (B, K*C_in*g*g)
        return prepared["flat"].gather(1, index)

    def extract(self, x, l):
        """phi (B, K*C_in*g*g) of one glimpse of x (B, C_in, H, W) at l (B, 2), without `prepare`.

        Crops each scale's S_i x S_i patch with one gather and average-pools it to g x g:
        cheaper than `prepare` when each image gets one glimpse only (the imagined
        canvases of the expected information gain), equal to it to rounding.
        """
        B, C_in, H, W = x.shape
        p = self.pad
        Wp = W + 2 * p
        flat = F.pad(x, (p, p, p, p)).reshape(B, C_in, -1)  # (B, C_in, Hp*Wp)
        base = self.centre_index(l, torch.tensor([W / 2.0, H / 2.0], device=x.device, dtype=x.dtype),
                                 torch.tensor([1.0, float(Wp)], device=x.device, dtype=x.dtype))  # (B,)
        phis = []
        for i, side in enumerate(self.sides):
            r = torch.arange(side, device=x.device)
            inside = ((p - side // 2) * (Wp + 1) + r[:, None] * Wp + r[None, :]).reshape(-1)  # (S_i*S_i,)
            index = (base[:, None] + inside).unsqueeze(1).expand(B, C_in, -1)  # (B, C_in, S_i*S_i)
            patch = flat.gather(2, index).view(B, C_in, side, side)
            pooled = patch if side == self.g else F.avg_pool2d(patch, side // self.g)  # (B, C_in, g, g)
            phis.append(pooled.reshape(B, -1))
        return torch.cat(phis, 1)  # (B, K*C_in*g*g)


class GlimpseNetwork(nn.Module):
    """g_t = relu(W3 relu(W1 phi + b1) + W4 relu(W2 l + b2) + b34)  (Fig. 1B).

    W1 (`fc_phi`) and W2 (`fc_l`) act on different inputs, and W3 (`fc_what`) and W4
    (`fc_where`) are summed; `fuse` assembles each pair into one matrix (block-diagonal
    and concatenated), once per rollout, so a glimpse costs two matmuls instead of four.
    """

    def __init__(self, *, phi_size, glimpse_hidden, loc_hidden, out_size):
        super().__init__()
        self.fc_phi = nn.Linear(phi_size, glimpse_hidden)  # W1
        self.fc_l = nn.Linear(2, loc_hidden)  # W2
        self.fc_what = nn.Linear(glimpse_hidden, out_size)  # W3
        self.fc_where = nn.Linear(loc_hidden, out_size, bias=False)  # W4 (one bias is enough)
        self.out_size = out_size

    def fuse(self):
        """Return step(phi (B, K*g*g), l (B, 2)) -> g_t (B, out_size) with fused weights."""
        w12 = torch.block_diag(self.fc_phi.weight, self.fc_l.weight)
        b12 = torch.cat([self.fc_phi.bias, self.fc_l.bias])
        w34 = torch.cat([self.fc_what.weight, self.fc_where.weight], dim=1)
        b34 = self.fc_what.bias

        def step(phi, l):
            a = F.relu(F.linear(torch.cat([phi, l], dim=1), w12, b12))  # (B, hg + hl)
            return F.relu(F.linear(a, w34, b34))

        return step

    def forward(self, phi, l):
        return self.fuse()(phi, l)


class CoreNetwork(nn.Module):
    """h_t = relu(W_h h_{t-1} + W_g g_t + b)  (the paper's ReLU RNN core).

    State is a tuple `(h,)`; `fuse` concatenates W_g and W_h so a step is one matmul.
    """

    def __init__(self, *, input_size, hidden_size):
        super().__init__()
        self.fc_g = nn.Linear(input_size, hidden_size)  # W_g
        self.fc_h = nn.Linear(hidden_size, hidden_size, bias=False)  # W_h
        self.hidden_size = hidden_size

    def init_state(self, batch_size, device, dtype):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def fuse(self):
        """Return step(g_t (B, D_g), state) -> state with W_g | W_h as one matrix."""
        w = torch.cat([self.fc_g.weight, self.fc_h.weight], dim=1)
        b = self.fc_g.bias

        def step(g_t, state):
            return (F.relu(F.linear(torch.cat([g_t, state[0]], dim=1), w, b)),)

        return step

    def forward(self, g_t, state):
        return self.fuse()(g_t, state)


class LSTMCore(nn.Module):
    """(h_t, c_t) = LSTMCell(g_t, (h_{t-1}, c_{t-1})): i, f, o gates and the cell update
    c_t = f * c_{t-1} + i * tanh(W_c [g_t, h_{t-1}]), h_t = o * tanh(c_t).

    State is the tuple `(h, c)`, carried through the rollout like the RNN's `(h,)`.
    """

    def __init__(self, *, input_size, hidden_size):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def init_state(self, batch_size, device, dtype):
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros)

    def fuse(self):
        """LSTMCell already computes its four gates with one matmul per input."""
        return self.forward

    def forward(self, g_t, state):
        return self.cell(g_t, state)


class LocationNetwork(nn.Module):
    """Gaussian policy pi(l_t | h_{t-1}) = N(mu_t, std^2 I), mu_t = tanh(W_l h_{t-1} + b_l),
    or with a hidden ReLU layer mu_t = tanh(W_l relu(W_u h_{t-1} + b_u) + b_l).

    The sample is a score-function (REINFORCE) sample: it is drawn without gradient, its
    log-density is taken on the unclamped value, and only then is it clamped to [-1, 1]
    for the retina.
    """

    def __init__(self, *, input_size, std, hidden_size=0):
        super().__init__()
        self.fc_hidden = nn.Linear(input_size, hidden_size) if hidden_size else None  # W_u
        self.fc = nn.Linear(hidden_size or input_size, 2)  # W_l
        self.std = std

    def forward(self, h):
        """mu (..., 2) from h (..., D)."""
        if self.fc_hidden is not None:
            h = F.relu(self.fc_hidden(h))
        return torch.tanh(self.fc(h))

    def log_prob(self, l_raw, mu):
        """log N(l_raw; mu, std^2 I) summed over (x, y): (...,) from (..., 2).

        log pi = -sum_i [(l_i - mu_i)^2 / (2 std^2) + log std + log(2 pi) / 2]
        """
        z = (l_raw - mu) / self.std
        return -(0.5 * z * z).sum(-1) - 2 * (math.log(self.std) + 0.5 * math.log(2 * math.pi))


class ActionNetwork(nn.Module):
    """Class logits f_a(h_t) = W_a h_t + b_a; softmax gives p_t(c)."""

    def __init__(self, *, input_size, num_classes):
        super().__init__()
        self.fc = nn.Linear(input_size, num_classes)

    def forward(self, h):
        return self.fc(h)


class BaselineNetwork(nn.Module):
    """Baseline b_t = w_b . h_{t-1} + c_b, regressed on the return G_t (variance reduction)."""

    def __init__(self, *, input_size):
        super().__init__()
        self.fc = nn.Linear(input_size, 1)

    def forward(self, h):
        return self.fc(h).squeeze(-1)
