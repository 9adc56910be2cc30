"""RecurrentAttention: the RAM of Mnih et al. (2014), and its one rollout over T glimpses."""

from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork,
                     LocationNetwork, LSTMCore, Retina)


class Rollout(NamedTuple):
    """Everything one pass over T glimpses produces, batch-major.

    h       (B, T, D)  hidden state after glimpse t (h_1 .. h_T)
    c       (B, T, D)  LSTM cell state after glimpse t; None for the RNN core
    logits  (B, T, C)  class logits from h_t
    l       (B, T, 2)  location of glimpse t, clamped to [-1, 1]
    mu      (B, T, 2)  policy mean that l_t was sampled from (computed from h_{t-1})
    log_pi  (B, T)     log pi(l_t | h_{t-1}) of the unclamped sample
    b       (B, T)     baseline b_t = b(h_{t-1}), a prediction of the return G_t
    """

    h: torch.Tensor
    c: Optional[torch.Tensor]
    logits: torch.Tensor
    l: torch.Tensor
    mu: torch.Tensor
    log_pi: torch.Tensor
    b: torch.Tensor


def final_std(config):
    """The location std of the policy a run ends with: --std_final when the std was annealed
    during training (the trainer sets each epoch's value), --std otherwise. Validation, test
    and the report use it."""
    return config.std if config.std_final is None else config.std_final


class RecurrentAttention(nn.Module):
    """Glimpse at l_t ~ pi(. | h_{t-1}), update h_t, classify from h_t; t = 1..T.

    h_0 = 0, so the first location's mean tanh(b_l) is learnt like every other; with
    first_glimpse="random" the first location is instead uniform over [-1, 1]^2 (not a
    policy action: mu_1 = l_1 and log_pi_1 = 0, so it has no REINFORCE term).
    """

    def __init__(self, *, in_channels, num_classes, patch_size, num_patches, glimpse_scale,
                 glimpse_hidden, loc_hidden, hidden_size, std, core_net_type="rnn", reinforce_core=False,
                 locator_hidden=0, first_glimpse="learned", pixel_mean=0.0, pixel_std=1.0):
        super().__init__()
        if first_glimpse not in ("learned", "random"):
            raise ValueError(f"first_glimpse must be learned or random, not {first_glimpse!r}")
        self.first_glimpse = first_glimpse
        self.retina = Retina(patch_size=patch_size, num_patches=num_patches, glimpse_scale=glimpse_scale)
        self.glimpse = GlimpseNetwork(phi_size=in_channels * self.retina.out_size,
                                      glimpse_hidden=glimpse_hidden, loc_hidden=loc_hidden,
                                      out_size=hidden_size, pixel_mean=pixel_mean, pixel_std=pixel_std)
        core_class = {"rnn": CoreNetwork, "lstm": LSTMCore}[core_net_type]
        self.core = core_class(input_size=hidden_size, hidden_size=hidden_size)
        self.locator = LocationNetwork(input_size=hidden_size, std=std, hidden_size=locator_hidden)
        self.classifier = ActionNetwork(input_size=hidden_size, num_classes=num_classes)
        self.baseliner = BaselineNetwork(input_size=hidden_size)
        # False: the REINFORCE term trains only the location network (its input h is
        # detached); True: its gradient also reaches the core and glimpse network.
        self.reinforce_core = reinforce_core

    @classmethod
    def from_config(cls, config, *, in_channels, num_classes):
        return cls(in_channels=in_channels, num_classes=num_classes,
                   patch_size=config.patch_size, num_patches=config.num_patches,
                   glimpse_scale=config.glimpse_scale, glimpse_hidden=config.glimpse_hidden,
                   loc_hidden=config.loc_hidden, hidden_size=config.hidden_size,
                   std=final_std(config), core_net_type=config.core_net_type,
                   reinforce_core=config.reinforce_core, locator_hidden=config.locator_hidden,
                   first_glimpse=config.first_glimpse, pixel_mean=config.pixel_mean,
                   pixel_std=config.pixel_std)

    def rollout(self, x, num_glimpses, *, policy_mean=False):
        """Run T = num_glimpses glimpses on x (B, C_in, H, W); return a `Rollout`.

        policy_mean: look at l_t = mu_t (no location noise; the deterministic policy) instead of
        a sample; the noise is still drawn, so the RNG advances the same way. A random first
        glimpse stays random under policy_mean (it is not the policy's)."""
        B = x.shape[0]
        prepared = self.retina.prepare(x)
        glimpse = self.glimpse.fuse()
        core = self.core.fuse()
        state = self.core.init_state(B, x.device, x.dtype)
        # The location noise of all T steps in one draw: l_t = mu_t + std * eps_t.
        eps = torch.randn(B, num_glimpses, 2, device=x.device, dtype=x.dtype)  # (B, T, 2)
        random_first = self.first_glimpse == "random"
        if random_first:
            l_first = torch.rand(B, 2, device=x.device, dtype=x.dtype) * 2.0 - 1.0  # (B, 2)

        hs, cs, mus, l_raws = [], [], [], []
        h_prev = state[0]
        for t in range(num_glimpses):
            if random_first and t == 0:
                mu = l_raw = l_first
            else:
                mu = self.locator(h_prev if self.reinforce_core else h_prev.detach())  # (B, 2)
                # Score-function sample: no gradient flows through l into the glimpse.
                l_raw = mu.detach() if policy_mean else mu.detach() + self.locator.std * eps[:, t]  # (B, 2)
            l = l_raw.clamp(-1.0, 1.0)
            state = core(glimpse(self.retina(prepared, l), l), state)
            h_prev = state[0]
            hs.append(h_prev)
            cs.append(state[-1])
            mus.append(mu)
            l_raws.append(l_raw)

        # Under bf16 autocast the states are bf16: everything returned is fp32.
        h = torch.stack(hs, 1).float()  # (B, T, D)
        mu = torch.stack(mus, 1)  # (B, T, 2), fp32: the location network runs outside autocast
        l_raw = torch.stack(l_raws, 1)  # (B, T, 2)
        log_pi = self.locator.log_prob(l_raw, mu)  # (B, T)
        if random_first:
            log_pi = torch.cat([torch.zeros_like(log_pi[:, :1]), log_pi[:, 1:]], 1)
        h_before = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)  # (B, T, D): h_0 .. h_{T-1}
        return Rollout(
            h=h,
            c=torch.stack(cs, 1).float() if len(state) == 2 else None,  # (B, T, D)
            logits=self.classifier(h).float(),  # (B, T, C)
            l=l_raw.clamp(-1.0, 1.0),  # (B, T, 2)
            mu=mu,
            log_pi=log_pi,  # (B, T)
            b=self.baseliner(h_before.detach()).float(),  # (B, T)
        )

    def state_before(self, out, t):
        """Core state before glimpse t (0-based) of a rollout: (h_t,) or (h_t, c_t), h_0 = 0."""
        if t == 0:
            B = out.h.shape[0]
            return self.core.init_state(B, out.h.device, out.h.dtype)
        return (out.h[:, t - 1],) if out.c is None else (out.h[:, t - 1], out.c[:, t - 1])

    def step(self, x, l, state):
        """One glimpse without the policy: the new core state after looking at x (B, C_in, H, W)
        at l (B, 2) from `state`. Used to imagine glimpses (EIG); the rollout is the hot path."""
        phi = self.retina.extract(x, l)
        return self.core(self.glimpse(phi, l), state)

    def look(self, prepared, l, state):
        """`step` on an input already prepared for the retina (`retina.prepare(x)`): for
        several glimpses of the same images at locations chosen outside the location network
        (the test-time policies of policies.py)."""
        return self.core(self.glimpse(self.retina(prepared, l), l), state)

    def forward(self, x, num_glimpses, *, policy_mean=False):
        """The rollout; training calls it through forward so that DistributedDataParallel
        sees the step."""
        return self.rollout(x, num_glimpses, policy_mean=policy_mean)
