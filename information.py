"""Entropy and information gain of the classifier's belief, glimpse by glimpse (pure functions).

Shared by the shaped reward (trainer.py) and the explanations (vae.py).
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
