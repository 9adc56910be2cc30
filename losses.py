"""Rewards, returns, advantages and the hybrid loss of the RAM: pure functions of a rollout.

Shapes follow the glossary of modules.py (B batch, T glimpses, C classes). No I/O here.
"""

import torch
import torch.nn.functional as F

from information import information_gain


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
