"""Entropy, realised and expected information gain of the classifier's belief, glimpse by glimpse.

Shared by the shaped reward (losses.py), training statistics (trainer.py) and the
explanations (explain.py). Everything but `expected_information_gain` is a pure function of
tensors; that one runs the frozen RAM and the VAE on imagined glimpses.
"""

import math

import torch


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


def eig_from_samples(p_prev, p_next):
    """Monte-Carlo expected information gain and its standard error.

    EIG = (1/S) sum_s KL(p_next^s || p_prev),  SE = std_s KL(p_next^s || p_prev) / sqrt(S)
    p_prev (B, C), p_next (S, B, C) -> (EIG (B,), SE (B,)); SE is 0 when S = 1.
    """
    # KL >= 0; the clamp only removes rounding below zero when p_next^s == p_prev.
    kl = kl_categorical(p_next, p_prev.unsqueeze(0)).clamp_min(0.0)  # (S, B)
    S = kl.shape[0]
    se = kl.std(0, correction=1) / S ** 0.5 if S > 1 else torch.zeros_like(kl[0])
    return kl.mean(0), se


@torch.no_grad()
def expected_information_gain(model, vae, out, x, *, samples, generator=None):
    """EIG of every glimpse of a rollout, before it is taken: (EIG (B, T), SE (B, T)).

    For glimpse t (0-based) at the rollout's own location l_t = out.l[:, t], from the state
    s_{t-1} = model.state_before(out, t):
      z^s ~ q(z | h_{t-1}) for t > 0, z^s ~ N(0, I) for t = 0 (nothing seen yet), s = 1..S;
      x^s = sigmoid(vae.decode_canvas(z^s))           an imagined canvas (its mean image);
      p_t^s = softmax(classifier(step(x^s, l_t, s_{t-1})[0]));
      EIG_t = (1/S) sum_s KL(p_t^s || p_{t-1}),  p_{t-1} = softmax(out.logits[:, t-1]), p_{-1} = 1/C.
    SE is the Monte-Carlo standard error over s.

    Why this is the information the glimpse is expected to carry: for any q,
    E_s KL(p^s || q) = -E_s H(p^s) - sum_c E_s[p^s_c] log q_c. When the classifier is
    calibrated and the VAE is a good model of what it has not seen, E_s[p_t^s] = p_{t-1}, so
    EIG_t = H_{t-1} - E_s[H_t^s] = I(class; glimpse t | glimpses < t), the mutual information.

    Vectorised over S: the batch is repeated S times (row s*B + b) and each t is one `step`.
    The noise per t is one draw eps (S, B, Z) from `generator` (the global RNG when None).
    x (B, C_in, H, W) is the rollout's input; only its shape is used, to check that the
    VAE's canvas matches what the RAM looks at.
    """
    if samples < 1:
        raise ValueError(f"expected_information_gain: samples must be >= 1, got {samples}")
    if tuple(x.shape[1:]) != vae.canvas_shape:
        raise ValueError(f"the VAE imagines canvases of shape {vae.canvas_shape} but the RAM sees "
                         f"{tuple(x.shape[1:])}")
    model.eval()
    vae.eval()
    B, T, C = out.logits.shape
    S, Z = samples, vae.latent_size
    uniform = torch.full((B, C), 1.0 / C, device=out.h.device, dtype=out.logits.dtype)  # (B, C)
    eigs, ses = [], []
    for t in range(T):
        eps = torch.randn(S, B, Z, device=out.h.device, dtype=out.h.dtype, generator=generator)  # (S, B, Z)
        if t == 0:
            z, p_prev = eps, uniform
        else:
            mu, logvar = vae.encode(out.h[:, t - 1])  # (B, Z)
            z, p_prev = mu + (0.5 * logvar).exp() * eps, out.logits[:, t - 1].softmax(-1)  # (S, B, Z), (B, C)
        canvas = torch.sigmoid(vae.decode_canvas(z)).flatten(0, 1)  # (S*B, C_in, S_c, S_c)
        state = tuple(s.repeat(S, 1) for s in model.state_before(out, t))  # each (S*B, D)
        l = out.l[:, t].repeat(S, 1)  # (S*B, 2)
        h = model.step(canvas, l, state)[0]  # (S*B, D)
        p_next = model.classifier(h).softmax(-1).view(S, B, C)  # (S, B, C)
        eig, se = eig_from_samples(p_prev, p_next)
        eigs.append(eig)
        ses.append(se)
    return torch.stack(eigs, 1), torch.stack(ses, 1)  # (B, T), (B, T)
