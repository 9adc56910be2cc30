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

    l (..., 2) -> (..., 2) (column, row), as floats holding integers. A location outside
    [-1, 1] is clamped onto it and a NaN one read at the centre, so no location ever becomes
    an index outside the image (a NaN would become -2^63); a non-finite policy shows in the
    loss instead, which the Trainer checks.
    """
    l = torch.nan_to_num(l, nan=0.0).clamp(-1, 1)
    return torch.floor((l + 1) * half)


class Retina(nn.Module):
    """Glimpse sensor rho(x_t, l): K square patches centred on l, the i-th of side
    g * s**i, each average-pooled to g x g, concatenated; pixels outside read as zero.

    The patch centre in pixels is floor((l + 1) / 2 * W) (and H for y); patch i covers
    [centre - S_i // 2, centre - S_i // 2 + S_i) with S_i = g * s**i.

    Batched with no Python loop over images: `prepare` makes one pass over the canvas per
    rollout, and `forward` gathers all B x K x g x g values of a glimpse in one indexed op,
    at a cost that does not grow with the canvas (`extract` crops instead; see there).
    - Every patch g x g (K = 1 or s = 1): `prepare` zero-pads the image; `forward` gathers
      the pixels themselves.
    - Several scales: `prepare` builds the summed-area table I[r, c] = sum(x[:r, :c]); a
      pooled cell [r0, r1) x [c0, c1) of side m = s**i is then
      (I[r1, c1] - I[r0, c1] - I[r1, c0] + I[r0, c0]) / m**2, so `forward` gathers the
      (g + 1)^2 cell corners of each patch. A corner past the image is clamped onto its
      border, which is exactly the zero padding. The table is float64: an fp32 sum of 10^4
      pixels is only good to ~1e-3, and a difference of two such sums would be no better.
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

        Returns a dict with `half` = (W/2, H/2) for `pixel_centre` and, when every patch is
        g x g, the padded image flattened to (B, C_in*Hp*Wp), the constant offsets
        (K*C_in*g*g,) of the patch pixels from the centre pixel and the stride (1, Wp) that
        maps the centre to a flat index; otherwise the summed-area table
        (B, C_in, H+1, W+1), the cell edges (K, g+1) of each patch relative to its centre
        and the cell areas (K, 1, 1).
        """
        B, C_in, H, W = x.shape
        device = x.device
        prepared = {"half": torch.tensor([W / 2.0, H / 2.0], device=device, dtype=x.dtype)}
        if self.sides[-1] == self.g:
            p = self.pad
            Hp, Wp = H + 2 * p, W + 2 * p
            r = torch.arange(self.g, device=device)
            inside = (p - self.g // 2) * (Wp + 1) + r[:, None] * Wp + r[None, :]  # (g, g), row-major
            planes = torch.arange(C_in, device=device) * (Hp * Wp)  # (C_in,)
            prepared.update(padded=F.pad(x, (p, p, p, p)).reshape(B, -1),  # (B, C_in*Hp*Wp)
                            offsets=(planes[:, None, None] + inside).reshape(-1).repeat(self.k),  # (K*C_in*g*g,)
                            stride=torch.tensor([1.0, float(Wp)], device=device, dtype=x.dtype))
        else:
            table = F.pad(x, (1, 0, 1, 0)).to(torch.float64).cumsum(-2).cumsum(-1)  # (B, C_in, H+1, W+1)
            step = torch.arange(self.g + 1, device=device)
            edges = torch.stack([step * self.s ** i - side // 2 for i, side in enumerate(self.sides)])  # (K, g+1)
            area = torch.tensor([float(self.s ** (2 * i)) for i in range(self.k)], device=device,
                                dtype=torch.float64).view(-1, 1, 1)  # (K, 1, 1)
            prepared.update(table=table, edges=edges, area=area)
        return prepared

    @staticmethod
    def centre_index(l, half, stride):
        """Flat index (B,) of the centre pixel in a padded plane: column + Wp * row."""
        # Elementwise, not a matmul: under bf16 autocast a matmul would round the index.
        return (pixel_centre(l, half) * stride).sum(-1).long()

    def forward(self, prepared, l):
        """phi = rho(x, l): (B, K*C_in*g*g), ordered (scale, channel, row, column), from
        `prepare(x)` and l (B, 2)."""
        if "padded" in prepared:
            base = self.centre_index(l, prepared["half"], prepared["stride"])  # (B,)
            return prepared["padded"].gather(1, base[:, None] + prepared["offsets"])  # (B, K*C_in*g*g)
        table, edges = prepared["table"], prepared["edges"]
        B, C_in, H1, W1 = table.shape
        centre = pixel_centre(l, prepared["half"]).long()  # (B, 2): column, row
        rows = (centre[:, 1, None, None] + edges).clamp(0, H1 - 1)  # (B, K, g+1)
        cols = (centre[:, 0, None, None] + edges).clamp(0, W1 - 1)  # (B, K, g+1)
        index = (rows[..., :, None] * W1 + cols[..., None, :]).view(B, 1, -1)  # (B, 1, K*(g+1)^2)
        index = index.expand(-1, C_in, -1)  # (B, C_in, K*(g+1)^2)
        corners = table.view(B, C_in, -1).gather(2, index).view(B, C_in, self.k, self.g + 1, self.g + 1)
        bands = corners[..., 1:, :] - corners[..., :-1, :]  # (B, C_in, K, g, g+1): I over each row band
        cells = bands[..., 1:] - bands[..., :-1]  # (B, C_in, K, g, g): the sum of each pooled cell
        phi = (cells / prepared["area"]).transpose(1, 2)  # (B, K, C_in, g, g)
        return phi.reshape(B, -1).to(prepared["half"].dtype)  # (B, K*C_in*g*g)

    def extract(self, x, l):
        """phi (B, K*C_in*g*g) of one glimpse of x (B, C_in, H, W) at l (B, 2), without `prepare`.

        Crops each scale's S_i x S_i patch with one gather and average-pools it to g x g.
        When each image gets one glimpse only (the imagined canvases of the expected
        information gain) this costs no more than `prepare` + `forward` (less up to 60x60,
        about the same at 100x100), and it equals them to rounding.
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

    pixel_mean, pixel_std: W1 reads the standardised retina (phi - pixel_mean) / pixel_std
    (the PyTorch reference feeds MNIST as (x - 0.1307) / 0.3081); 0 and 1 read phi as it is.
    `fuse` folds them into W1 and b1, so they cost nothing per glimpse. Pixels past the
    canvas read as 0 before standardising, as everywhere else.
    """

    def __init__(self, *, phi_size, glimpse_hidden, loc_hidden, out_size, pixel_mean=0.0, pixel_std=1.0):
        super().__init__()
        if not pixel_std > 0:
            raise ValueError(f"pixel_std must be positive, not {pixel_std}")
        self.pixel_mean, self.pixel_std = float(pixel_mean), float(pixel_std)
        self.fc_phi = nn.Linear(phi_size, glimpse_hidden)  # W1
        self.fc_l = nn.Linear(2, loc_hidden)  # W2
        self.fc_what = nn.Linear(glimpse_hidden, out_size)  # W3
        self.fc_where = nn.Linear(loc_hidden, out_size, bias=False)  # W4 (one bias is enough)
        self.out_size = out_size

    def fuse(self):
        """Return step(phi (B, K*g*g), l (B, 2)) -> g_t (B, out_size) with fused weights."""
        w_phi, b_phi = self.fc_phi.weight, self.fc_phi.bias
        if (self.pixel_mean, self.pixel_std) != (0.0, 1.0):
            # W1 (phi - m) / s + b1 = (W1 / s) phi + (b1 - (m / s) W1 1)
            w_phi, b_phi = w_phi / self.pixel_std, b_phi - (self.pixel_mean / self.pixel_std) * w_phi.sum(1)
        w12 = torch.block_diag(w_phi, self.fc_l.weight)
        b12 = torch.cat([b_phi, self.fc_l.bias])
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
        """mu (..., 2) from h (..., D), in fp32 even under bf16 autocast: the locations, their
        pixel rounding and the REINFORCE log-density do not take bf16's rounding."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.float()
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
