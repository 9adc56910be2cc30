"""Entropy, realised and expected information gain of the classifier's belief, glimpse by glimpse.

Shared by the shaped reward (losses.py), training statistics (trainer.py) and the
explanations (explain.py). Everything but `expected_information_gain` is a pure function of
tensors; that one runs the frozen RAM and the VAE on imagined glimpses.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from arguments import ESTIMATORS


def entropy(p):
    """H(p) = -sum_c p(c) log p(c) over the last dim (0 log 0 = 0): (..., C) -> (...)."""
    return -torch.special.xlogy(p, p).sum(-1)


def kl_categorical(p, q):
    """KL(p || q) = sum_c p(c) (log p(c) - log q(c)) over the last dim: (..., C) -> (...)."""
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def entropies(probs):
    """H_t for t = 0..T, H_0 = log C (the uniform prior before any glimpse): (B, T, C) -> (B, T+1)."""
    H = entropy(probs)  # (B, T)
    H0 = torch.full_like(H[:, :1], math.log(probs.shape[-1]))  # (B, 1)
    return torch.cat([H0, H], 1)


def information_gain(probs):
    """Realised information gain of glimpse t, IG_t = H_{t-1} - H_t, H_0 = log C: (B, T, C) -> (B, T).

    Summed over t it telescopes to log C - H_T.
    """
    H = entropies(probs)  # (B, T+1)
    return H[:, :-1] - H[:, 1:]


def glimpse_statistics(probs, y):
    """Per image and glimpse (B, T): correct_t = 1[argmax p_t == y], entropy_t = H_t and
    ig_t = IG_t, from class probabilities probs (B, T, C) and labels y (B,)."""
    return {
        "correct_t": (probs.argmax(-1) == y[:, None]).float(),
        "entropy_t": entropy(probs),
        "ig_t": information_gain(probs),
    }


def eig_from_samples(p_prev, p_next, *, estimator="jackknife", weights=None):
    """The expected information gain from S imagined beliefs, and the consistency gap.

    The mean over s of KL(p_next^s || p_prev) splits exactly into two parts, with
    p_bar = (1/S) sum_s p_next^s:
      EIG = H(p_bar) - (1/S) sum_s H(p_next^s)   the mutual information between the class and
                                                 the imagined glimpse: what the glimpse is
                                                 expected to tell (>= 0, 0 when every imagined
                                                 belief is the same);
      gap = KL(p_bar || p_prev)                  zero only when the imagined beliefs average to
                                                 the real one (a calibrated classifier and a VAE
                                                 that imagines what is really possible).
    H(p_bar) of S samples is biased low, by about (1/2S) sum_c Var_s(p_next^s(c)) / p_bar(c):
    the plugin estimator (the report's before 2026-11-30) moves that much from EIG into the
    gap (at S = 16 and beliefs that a glimpse makes near-certain, about 0.1-0.3 nats).
    estimator="jackknife" replaces H(p_bar) by its jackknife estimate
    S H(p_bar) - (S-1)/S sum_i H(p_bar without sample i), which removes the 1/S term. It
    never lowers EIG (H is concave), so EIG stays >= 0; the gap, an unbiased estimate
    around a true value that can be 0, can then fall below 0 for one image. The sum EIG + gap
    is the mean KL either way. S = 1 has no jackknife: the plugin is used.
    weights (S, B), summing to 1 over s (None: 1/S each), weight the samples: every mean over
    s above becomes the weighted sum, and the jackknife is generalised to them (below; the
    same estimator for equal weights), with p_bar without i = (p_bar - w_i p^i) / (1 - w_i).
    Until 2026-12-02 it took n H(p_bar) - (n-1) sum_i w_i H(p_bar without i), n = 1 / sum_s
    w_s^2, which removes too little of the bias when the weights differ (`--imagine_weights
    belief` figures measured before then).
    p_prev (B, C), p_next (S, B, C) -> (EIG (B,), gap (B,)).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"eig_from_samples: unknown estimator {estimator!r} (one of {', '.join(ESTIMATORS)})")
    S = p_next.shape[0]
    p = p_next.double()
    w = torch.full(p.shape[:2], 1.0 / S, dtype=p.dtype, device=p.device) if weights is None else weights.double()
    p_bar = (w[..., None] * p).sum(0)  # (B, C)
    plugin = entropy(p_bar) - (w * entropy(p)).sum(0)  # (B,), >= 0 in exact arithmetic
    if estimator == "plugin" or S == 1:
        # Both are >= 0 in exact arithmetic; the clamps remove rounding below zero.
        eig = plugin.clamp_min(0.0)
        gap = kl_categorical(p_bar, p_prev.double()).clamp_min(0.0)
        return eig.to(p_next.dtype), gap.to(p_next.dtype)
    left_out = ((p_bar - w[..., None] * p) / (1 - w[..., None]).clamp_min(1e-12)).clamp_min(0.0)  # (S, B, C)
    # The jackknife's H(p_bar) minus the plugin's: what the plugin moves from EIG into the gap.
    # The bias of H of a weighted mean is about a k, k = sum_s w_s^2 (1/S for equal weights); a
    # left-out mean has k_i = (k - w_i^2) / (1 - w_i)^2. Weighting the left-out entropies by
    # 1 - w_i cancels their first-order spread around H(p_bar), and a is read off the change in
    # k: correction = k sum_i (1 - w_i)(H(p_bar) - H(left_out_i)) / sum_i (1 - w_i)(k_i - k),
    # which is (S - 1)(H(p_bar) - mean_i H(left_out_i)) for equal weights, the usual jackknife.
    k = (w ** 2).sum(0)  # (B,)
    k_left = (k - w ** 2) / (1 - w).clamp_min(1e-12) ** 2  # (S, B)
    spread = ((1 - w) * (k_left - k)).sum(0)  # (B,), > 0 unless one sample holds all the weight
    drop = ((1 - w) * (entropy(p_bar) - entropy(left_out))).sum(0)
    correction = torch.where(spread > 1e-12, k * drop / spread.clamp_min(1e-12), torch.zeros_like(k))  # (B,)
    eig = (plugin + correction).clamp_min(0.0)  # >= 0 but for rounding
    gap = kl_categorical(p_bar, p_prev.double()) - correction
    return eig.to(p_next.dtype), gap.to(p_next.dtype)


def calibration(confidence, correct, *, bins=15):
    """Reliability of one glimpse's beliefs: confidence (N,) = max_c p_t(c), correct (N,) in
    {0, 1}, in `bins` equal-width bins of confidence over [0, 1]. Returns (ECE, per-bin mean
    confidence (bins,), per-bin accuracy (bins,), per-bin count (bins,)), empty bins 0.
    ECE = sum_k n_k / N |accuracy_k - confidence_k| (Guo et al. 2017)."""
    confidence, correct = confidence.double().flatten(), correct.double().flatten()
    index = (confidence * bins).long().clamp(0, bins - 1)  # confidence 1 goes to the last bin
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    mean_conf, accuracy = conf_sum / count.clamp_min(1), acc_sum / count.clamp_min(1)
    ece = ((count / max(len(confidence), 1)) * (accuracy - mean_conf).abs()).sum()
    return float(ece), mean_conf.tolist(), accuracy.tolist(), count.long().tolist()


def fit_temperature(logits, y, *, max_iter=100):
    """The temperature tau > 0 that minimises the NLL of softmax(logits / tau) on logits (N, C)
    and labels y (N,) (temperature scaling, Guo et al. 2017): LBFGS on log tau from tau = 1.
    Dividing by tau never changes the argmax, so accuracy stays what it was."""
    logits = logits.detach().double()
    log_tau = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_tau], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_tau.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_tau.detach().exp())


def belief_weights(belief, q):
    """Importance weights (S, B) of S neighbours whose own beliefs are q (B, S, C), so that
    they stand for images of the belief (B, C) rather than of their own mix of beliefs:
      w_s = (1/S) sum_c belief(c) q_s(c) / q_bar(c),  q_bar = (1/S) sum_s q_s,
    which sum to 1 over s. Read q_s as the posterior of the class of neighbour s under the
    neighbours' prior q_bar: w_s is the density ratio of its canvas under the mix of classes
    `belief` to that under q_bar, so the weighted mix of classes is `belief` (exactly when every
    q_s is one-hot)."""
    q = q.double()
    q_bar = q.mean(1, keepdim=True).clamp_min(1e-12)  # (B, 1, C)
    w = (q * (belief.double()[:, None] / q_bar)).sum(-1)  # (B, S)
    return (w / w.sum(1, keepdim=True)).T.to(belief.dtype)  # (S, B)


# The ridge of `tilted_weights`, chosen on the first 2,000 validation images of the MNIST and
# cluttered 60x60 row models (2026-12-02; README, "Neighbours tilted to the belief").
TILT_RIDGE = 0.05


def tilted_weights(belief, q, *, ridge=TILT_RIDGE, steps=30):
    """The weights (S, B) nearest to equal (least KL from 1/S) under which the S neighbours' own
    beliefs q (B, S, C) mix to the image's belief (B, C): w_s proportional to exp(lam . q_s),
    lam (B, C) minimising log sum_s exp(lam . q_s) - lam . belief + ridge/2 |lam|^2 (damped
    Newton, `steps` steps, each halved until the objective does not rise). The mix is then
    belief - ridge lam: exactly the belief as ridge -> 0 when it lies inside the neighbours'
    beliefs' hull, and the ridge keeps the weights from resting on a few neighbours when it
    does not. Where `belief_weights` is exact only for certain (one-hot) neighbours, this
    matches any mix, and spreads the weight as evenly as matching allows."""
    q, p = q.double(), belief.double()
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    lam = torch.zeros_like(p)  # (B, C)

    def objective(lam):
        return torch.logsumexp((q * lam[:, None]).sum(-1), 1) - (lam * p).sum(-1) + ridge / 2 * (lam ** 2).sum(-1)

    for _ in range(steps):
        w = (q * lam[:, None]).sum(-1).softmax(1)  # (B, S)
        mix = (w[..., None] * q).sum(1)  # (B, C)
        grad = mix - p + ridge * lam
        if grad.abs().max() < 1e-9:  # converged for every image
            break
        d = q - mix[:, None]
        hessian = torch.einsum("bs,bsc,bsk->bck", w, d, d) + ridge * eye
        step = torch.linalg.solve(hessian, grad[..., None])[..., 0]
        before, size = objective(lam), torch.ones_like(lam[:, 0])
        for _ in range(20):
            rises = objective(lam - size[:, None] * step) > before + 1e-12  # not rounding
            if not rises.any():
                break
            size = torch.where(rises, size / 2, size)
        lam = lam - size[:, None] * step
    return (q * lam[:, None]).sum(-1).softmax(1).T.to(belief.dtype)  # (S, B)


@dataclass(frozen=True)
class Bank:
    """The neighbour imagination's training canvases and the RAM's states on them.

    dataset  indexable by a tensor of indices, giving (x, x_clean, y) (a split's dataset); its
             first N images are the bank
    keys     keys[t - 1] (N, K): the VAE's input (`vae.state_input`: h_t, and c_t for an LSTM)
             after t glimpses of each bank image on its own rollout, t = 1..T-1
    beliefs  beliefs[t - 1] (N, C): the belief after those t glimpses, read by the probe of
             glimpse t when `probes` are given, else by the RAM's classifier (`belief`); with
             them the neighbours are weighted to the image's belief (`nearest`), without them
             they count alike
    probes   the linear probes (`fit_probe`) the beliefs were read with, or None
    weighting  how the neighbours are weighted to the image's belief: "belief"
             (`belief_weights`) or "tilted" (`tilted_weights` with this `ridge`)
    """
    dataset: object
    keys: tuple
    beliefs: tuple | None = None
    probes: list | None = None
    weighting: str = "belief"
    ridge: float = TILT_RIDGE

    def belief(self, classifier, h, t):
        """The belief (B, C) after t glimpses from the core's h (B, D), read as the bank's
        beliefs were: by the probe of glimpse t, or by `classifier`."""
        logits = classifier(h) if self.probes is None else probe_logits(self.probes, t - 1, h)
        return logits.softmax(-1)

    def nearest(self, key, t, samples, belief=None):
        """The `samples` bank canvases whose state after t glimpses is nearest (Euclidean) to
        key (B, K), nearest first, on key's device, and their weights: ((S, B, C_in, H, W),
        (S, B) or None). A bank with beliefs, given the image's belief (B, C) after those t
        glimpses, weights them to it (`belief_weights` or `tilted_weights`, by `weighting`);
        else the weights are None (1/S each).
        A bank smaller than S repeats its images."""
        keys = self.keys[t - 1].to(key.device)  # (N, K)
        k = min(samples, keys.shape[0])
        idx = torch.cdist(key.float(), keys.float()).topk(k, dim=1, largest=False).indices  # (B, k)
        idx = idx[:, torch.arange(samples, device=idx.device) % k]  # (B, S)
        weights = None
        if belief is not None and self.beliefs is not None:
            q = self.beliefs[t - 1].to(key.device)[idx]  # (B, S, C)
            weights = tilted_weights(belief, q, ridge=self.ridge) if self.weighting == "tilted" else \
                belief_weights(belief, q)  # (S, B)
        canvas = self.dataset[idx.T.reshape(-1).cpu()][0]  # (S*B, C_in, H, W)
        return canvas.to(key.device, key.dtype).unflatten(0, (samples, key.shape[0])), weights


@dataclass(frozen=True)
class Imagination:
    """How the canvas a glimpse will see is imagined (by the VAE, or from a `Bank`).

    bernoulli  each imagined canvas is a draw x^s ~ Bernoulli(sigmoid(decode(z^s))) pixel by
               pixel (the VAE's likelihood), not its mean image: a draw of what could be seen,
               which the mutual information needs (False: the mean image, as before 2026-11-30);
    scale      z^s = mu + scale * sigma * eps: widens q(z | h_{t-1}) when > 1 (the VAE's
               posterior is over-certain; `explain.imagination_settings` picks it on
               validation images by the `spread_check`);
    prior      before the first glimpse nothing is known, so the canvas is imagined from the
               prior predictive: canvases drawn at random from `prior` (N, C_in, H, W), real
               training canvases, when given; else z^s ~ N(0, I) decoded (and drawn when bernoulli).
    bank       a `Bank`: after the first glimpse, the imagined canvases are the S real training
               canvases whose core state after as many glimpses is nearest to the image's (a
               non-parametric posterior predictive: what images that leave the RAM in this state
               look like), instead of the VAE's, weighted to the image's belief when the bank
               holds beliefs; bernoulli and scale then play no part.
    The defaults are the mean image of q(z | h_{t-1}) and of N(0, I), the estimator before 2026-11-30.
    """
    bernoulli: bool = False
    scale: float = 1.0
    prior: torch.Tensor | None = None
    bank: Bank | None = None


class Imagined(NamedTuple):
    """`imagine`'s answer: S imagined canvases per image (S, B, C_in, H, W), the Bernoulli means
    they were drawn from (the canvases themselves when drawn from the prior or the bank), and
    the weight of each canvas (S, B), summing to 1 over S, or None: 1/S each."""
    canvas: torch.Tensor
    means: torch.Tensor
    weights: torch.Tensor | None = None


def imagine(vae, h_prev, *, samples, batch, imagination=Imagination(), generator=None, t=None, belief=None):
    """The `Imagined` canvases of S samples for each of B images. h_prev (B, D or 2D) is the
    VAE's input from the state after the glimpses so far (`vae.state_input`, h and, for an
    LSTM, c), None before the first glimpse; t, the number of those glimpses, is needed with a
    bank, and the belief (B, C) after them weights a bank's neighbours (`bank_belief`).
    Random numbers, in this order from `generator`: eps (S, B, Z), then the prior's indices
    (S*B,) or the Bernoulli draws (none for the bank's canvases)."""
    device = vae.encoder[0].weight.device
    dtype = vae.encoder[0].weight.dtype
    eps = torch.randn(samples, batch, vae.latent_size, device=device, dtype=dtype, generator=generator)
    if h_prev is not None and imagination.bank is not None:
        if t is None or not 1 <= t <= len(imagination.bank.keys):
            raise ValueError(f"imagine: the bank holds states after 1..{len(imagination.bank.keys)} glimpses, "
                             f"not after {t}")
        canvas, weights = imagination.bank.nearest(h_prev, t, samples, belief)
        return Imagined(canvas, canvas, weights)
    if h_prev is None and imagination.prior is not None:
        prior = imagination.prior
        pick = torch.randint(0, prior.shape[0], (samples * batch,), device=prior.device, generator=generator)
        canvas = prior[pick].to(device, dtype).unflatten(0, (samples, batch))  # (S, B, C_in, H, W)
        return Imagined(canvas, canvas)
    if h_prev is None:
        z = eps
    else:
        mu, logvar = vae.encode(h_prev)  # (B, Z)
        z = mu + imagination.scale * (0.5 * logvar).exp() * eps  # (S, B, Z)
    mean = torch.sigmoid(vae.decode_canvas(z))  # (S, B, C_in, H, W)
    if not imagination.bernoulli:
        return Imagined(mean, mean)
    return Imagined(torch.bernoulli(mean, generator=generator), mean)


class Expected(NamedTuple):
    """`expected_information_gain`'s answer, each (B, T): the mutual-information EIG and the
    consistency gap of the RAM's own classifier, the NLL of the real glimpse under the imagined
    ones (the spread check), and the probes' EIG and gap (None without probes)."""
    eig: torch.Tensor
    gap: torch.Tensor
    glimpse_nll: torch.Tensor
    probe_eig: torch.Tensor | None = None
    probe_gap: torch.Tensor | None = None


def glimpse_nll(model, real, means, l, weights=None):
    """-log sum_s w_s p(g | means^s) of the real glimpse g = retina(real, l), each retina
    value a Bernoulli target (intensities in [0, 1]) of the same glimpse of the imagined
    means (S, B, C_in, H, W), weighted by weights (S, B) (None: w_s = 1/S): how well the
    imagination predicted what was seen (B,). Lower is better; an over-certain imagination
    that misses the real glimpse pays most."""
    S, B = means.shape[:2]
    target = model.retina.extract(real, l).flatten(1)  # (B, P)
    p = model.retina.extract(means.flatten(0, 1), l.repeat(S, 1)).flatten(1).view(S, B, -1)  # (S, B, P)
    p = p.clamp(1e-4, 1 - 1e-4)
    log_lik = (torch.special.xlogy(target, p) + torch.special.xlogy(1 - target, 1 - p)).sum(-1)  # (S, B)
    if weights is None:
        return math.log(S) - log_lik.logsumexp(0)
    return -(log_lik + weights.clamp_min(1e-30).log()).logsumexp(0)


def probe_logits(probes, t, h):
    """W_t h + b_t, the logits of the linear probe of glimpse t (`fit_probe`): (..., D) -> (..., C)."""
    W, b = probes[t]
    return h @ W.T + b


def bank_belief(model, imagination, h, t):
    """The belief (B, C) after t glimpses, from the core's h (B, D), that a bank holding beliefs
    weights its neighbours to (`Bank.nearest`); None without one or before the first glimpse."""
    bank = imagination.bank
    return bank.belief(model.classifier, h, t) if bank is not None and bank.beliefs is not None and t > 0 else None


def vae_input_before(vae, model, out, t):
    """The VAE's input from the core state before glimpse t (0-based) of a rollout (B, D or
    2D: `vae.state_input`), None before the first glimpse (t = 0)."""
    return None if t == 0 else vae.state_input(*model.state_before(out, t))


@torch.no_grad()
def spread_check(model, vae, out, x, *, samples, imagination=Imagination(), generator=None):
    """The `glimpse_nll` (B, T) of every glimpse of a rollout under the canvases imagined
    before it, exactly as `expected_information_gain` imagines them (the same random numbers
    in the same order), without running the RAM on them: what choosing the imagination needs."""
    vae.eval()
    B, T = out.l.shape[:2]
    nll = []
    for t in range(T):
        imagined = imagine(vae, vae_input_before(vae, model, out, t), samples=samples, batch=B,
                           imagination=imagination, generator=generator, t=t,
                           belief=bank_belief(model, imagination, out.h[:, t - 1], t))
        nll.append(glimpse_nll(model, x, imagined.means, out.l[:, t], imagined.weights))
    return torch.stack(nll, 1)  # (B, T)


@torch.no_grad()
def expected_information_gain(model, vae, out, x, *, samples, generator=None, imagination=Imagination(),
                              probes=None, estimator="jackknife"):
    """EIG of every glimpse of a rollout, before it is taken, its consistency gap
    (`eig_from_samples`) and the spread check (`glimpse_nll`): an `Expected`, each (B, T).

    For glimpse t (0-based) at the rollout's own location l_t = out.l[:, t], from the state
    s_{t-1} = model.state_before(out, t):
      x^s, s = 1..S: canvases imagined by the VAE from h_{t-1} (and c_{t-1} for an LSTM's
           "hc" VAE; `imagine`; before the first glimpse from the prior), by default the
           mean image of z^s ~ q(z | h_{t-1});
      p_t^s = softmax(classifier(step(x^s, l_t, s_{t-1})[0]));
      EIG_t = H(p_bar_t) - (1/S) sum_s H(p_t^s),  p_bar_t = (1/S) sum_s p_t^s,
      gap_t = KL(p_bar_t || p_{t-1}),  p_{t-1} = softmax(out.logits[:, t-1]), p_{-1} = 1/C.
    With probes (a list of T (W, b), `fit_probe`), the same from the probes' beliefs on the
    same imagined states, p_{t-1} then the probe of glimpse t-1 on h_{t-1}. A bank that holds
    beliefs weights its canvases (`Bank.nearest`), and every mean over s is then weighted.

    EIG_t + gap_t = (1/S) sum_s KL(p_t^s || p_{t-1}), the estimator reported before
    2026-11-29 as EIG. EIG_t is the mutual information I(class; glimpse t | glimpses < t)
    under the imagined canvases; the realised IG_t matches it in expectation only when the
    gap is 0, i.e. when the beliefs are calibrated and the VAE imagines what is really
    possible. So the report gives both, by `estimator` (`eig_from_samples`).

    Vectorised over S: the batch is repeated S times (row s*B + b) and each t is one `step`.
    x (B, C_in, H, W) is the rollout's input (any C_in, H != W allowed): the real canvas the
    spread check compares with; the VAE's canvas (C_in, H, W) must be exactly what the RAM sees.
    """
    if samples < 1:
        raise ValueError(f"expected_information_gain: samples must be >= 1, got {samples}")
    if tuple(x.shape[1:]) != vae.canvas_shape:
        raise ValueError(f"the VAE imagines canvases of shape {vae.canvas_shape} but the RAM sees "
                         f"{tuple(x.shape[1:])}")
    model.eval()
    vae.eval()
    B, T, C = out.logits.shape
    S = samples
    uniform = torch.full((B, C), 1.0 / C, device=out.h.device, dtype=out.logits.dtype)  # (B, C)
    columns = {key: [] for key in Expected._fields}
    for t in range(T):
        canvas, means, weights = imagine(vae, vae_input_before(vae, model, out, t), samples=S, batch=B,
                                         imagination=imagination, generator=generator, t=t,
                                         belief=bank_belief(model, imagination, out.h[:, t - 1], t))
        state = tuple(s.repeat(S, 1) for s in model.state_before(out, t))  # each (S*B, D)
        l = out.l[:, t].repeat(S, 1)  # (S*B, 2)
        h = model.step(canvas.flatten(0, 1), l, state)[0]  # (S*B, D)
        p_prev = uniform if t == 0 else out.logits[:, t - 1].softmax(-1)  # (B, C)
        eig, gap = eig_from_samples(p_prev, model.classifier(h).softmax(-1).view(S, B, C), estimator=estimator,
                                    weights=weights)
        columns["eig"].append(eig)
        columns["gap"].append(gap)
        columns["glimpse_nll"].append(glimpse_nll(model, x, means, out.l[:, t], weights))
        if probes is not None:
            p_prev = uniform if t == 0 else probe_logits(probes, t - 1, out.h[:, t - 1]).softmax(-1)
            eig, gap = eig_from_samples(p_prev, probe_logits(probes, t, h).softmax(-1).view(S, B, C),
                                        estimator=estimator, weights=weights)
            columns["probe_eig"].append(eig)
            columns["probe_gap"].append(gap)
    return Expected(**{key: torch.stack(v, 1) if v else None for key, v in columns.items()})  # each (B, T)


def fit_probe(h, y, *, num_classes, weight_decay=1e-4, max_iter=200):
    """A linear probe of what a hidden state knows: multinomial logistic regression
    softmax(W h + b) fitted to states h (N, D) and labels y (N,), or beliefs y (N, C) (soft
    targets), by L-BFGS on the mean cross-entropy + weight_decay * |W|^2 (float64, from zero,
    so the fit is deterministic). Returns (W (C, D), b (C,)) as float32."""
    h, y = h.detach().double(), y.detach()
    y = y.double() if y.is_floating_point() else y
    W = torch.zeros(num_classes, h.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(h @ W.T + b, y) + weight_decay * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return W.detach().float(), b.detach().float()

