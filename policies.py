"""Glimpse policies at test time, to compare with the learned one: where would a glimpse be
most informative, and does looking there beat the location network?

    learned  l_t ~ N(mu(h_{t-1}), std^2): the RAM's own location network, one sampled path (M = 1)
    random   l_t ~ U[-1, 1]^2
    eig      l_t = the candidate of a G x G grid over [-1, 1]^2 (--eig_candidates G) with the
             largest expected information gain, EIG_t(l) = H(p_bar) - (1/S) sum_s H(p^s)
             (by --eig_estimator, `information.eig_from_samples`),
             from S canvases x^s imagined from the current state (`information.imagine`, with the
             report's --imagine settings: drawn by the VAE, or the training canvases whose state
             is nearest); before the first glimpse they are imagined from the prior, so the first
             location is the same for every image up to sampling noise).

Every policy runs the same frozen RAM (glimpse network, core, classifier); only where it
looks changes. The eig policy is batched: per glimpse, the S imagined canvases of every image
are prepared for the retina once, and each candidate is one batched glimpse of all S x B of
them (so B x S x G^2 glimpses per step, in chunks of --batch_size images).
"""

import time

import torch
from tqdm import tqdm

from arguments import POLICIES
from information import Imagination, bank_belief, eig_from_samples, expected_information_gain, imagine, information_gain
from model import Rollout
from utils import GlimpseMeter


def candidate_grid(side, device=None):
    """The G x G candidate locations (G^2, 2), (x, y) row by row over [-1, 1]^2."""
    axis = torch.linspace(-1.0, 1.0, side, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1)  # (G^2, 2)


@torch.no_grad()
def eig_per_candidate(model, vae, state, p_prev, grid, *, samples, generator=None, imagination=Imagination(),
                      t=None, estimator="jackknife"):
    """EIG (B, K) of a glimpse at each of the K candidate locations grid (K, 2), from the core
    state before it (a tuple of (B, D)), after t glimpses, and the current belief p_prev (B, C)
    (None before the first glimpse: the canvas is then imagined from the prior,
    `information.imagine`)."""
    h = state[0]
    B, S = h.shape[0], samples
    canvas, _, weights = imagine(vae, None if p_prev is None else vae.state_input(*state), samples=S, batch=B,
                                 imagination=imagination, generator=generator, t=t,
                                 belief=None if p_prev is None else bank_belief(model, imagination, h, t))
    if p_prev is None:
        C = model.classifier.fc.out_features
        p_prev = torch.full((B, C), 1.0 / C, device=h.device, dtype=h.dtype)  # (B, C)
    prepared = model.retina.prepare(canvas.flatten(0, 1))  # of S*B canvases
    repeated = tuple(s.repeat(S, 1) for s in state)  # each (S*B, D)
    eigs = []
    for l in grid:
        l = l.expand(S * B, 2)  # (S*B, 2)
        h_next = model.look(prepared, l, repeated)[0]  # (S*B, D)
        p_next = model.classifier(h_next).softmax(-1).view(S, B, -1)  # (S, B, C)
        eigs.append(eig_from_samples(p_prev, p_next, estimator=estimator, weights=weights)[0])  # (B,)
    return torch.stack(eigs, 1)  # (B, K)


@torch.no_grad()
def policy_rollout(model, x, num_glimpses, *, policy, vae=None, grid=None, samples=8, generator=None,
                   imagination=Imagination(), estimator="jackknife"):
    """T glimpses of the frozen RAM on x (B, C_in, H, W) with locations from `policy`; a
    `Rollout` with h, c, logits, l (for random and eig, mu, log_pi and b are None: no policy
    gradient here)."""
    model.eval()
    if policy == "learned":
        return model.rollout(x, num_glimpses)
    if policy == "eig" and (vae is None or grid is None):
        raise ValueError("policy_rollout: the eig policy needs the VAE and the candidate grid")
    if policy not in POLICIES:
        raise ValueError(f"policy_rollout: unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    B = x.shape[0]
    prepared = model.retina.prepare(x)
    state = model.core.init_state(B, x.device, x.dtype)
    hs, cs, ls, p_prev = [], [], [], None
    for t in range(num_glimpses):
        if policy == "random":
            l = torch.rand(B, 2, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1  # (B, 2)
        else:
            best = eig_per_candidate(model, vae, state, p_prev, grid, samples=samples, generator=generator,
                                     imagination=imagination, t=t, estimator=estimator).argmax(1)  # (B,)
            l = grid[best]  # (B, 2)
        state = model.look(prepared, l, state)
        p_prev = model.classifier(state[0]).softmax(-1)  # (B, C)
        hs.append(state[0])
        cs.append(state[-1])
        ls.append(l)
    h = torch.stack(hs, 1)  # (B, T, D)
    return Rollout(h=h, c=torch.stack(cs, 1) if len(state) == 2 else None, logits=model.classifier(h),
                   l=torch.stack(ls, 1), mu=None, log_pi=None, b=None)  # l (B, T, 2)


@torch.no_grad()
def compare_policies(config, model, vae, loader, device, policies, *, max_images=0, imagination=Imagination()):
    """Per policy, over the images of loader (the first max_images, 0: all): accuracy after
    each glimpse t, realised IG_t and the mutual-information EIG_t at the locations it chose
    (a fresh estimate, not the score it chose by), means and standard errors, and the wall
    time: {policy: {accuracy, accuracy_se, ig, ig_se, eig, eig_se, seconds, images}}."""
    grid = candidate_grid(config.eig_candidates, device)
    out = {}
    for policy in policies:
        meter, n, start = GlimpseMeter(), 0, time.perf_counter()
        generator = torch.Generator(device=device).manual_seed(config.random_seed)
        torch.manual_seed(config.random_seed)  # the learned policy's location noise
        bar = tqdm(loader, desc=f"policy {policy}", unit="batch", leave=False)
        for x, _, y in bar:
            if max_images and n >= max_images:
                break
            if max_images:
                x, y = x[:max_images - n], y[:max_images - n]
            x, y = x.to(device), y.to(device)
            rollout = policy_rollout(model, x, config.num_glimpses, policy=policy, vae=vae, grid=grid,
                                     samples=config.eig_samples, generator=generator, imagination=imagination,
                                     estimator=config.eig_estimator)
            probs = rollout.logits.softmax(-1)  # (B, T, C)
            eig = expected_information_gain(model, vae, rollout, x, samples=config.eig_samples, generator=generator,
                                            imagination=imagination, estimator=config.eig_estimator).eig
            meter.update(accuracy=(probs.argmax(-1) == y[:, None]).float(), ig=information_gain(probs), eig=eig)
            n += x.shape[0]
        out[policy] = {key + suffix: getattr(meter, fn)(key) for key in ("accuracy", "ig", "eig")
                       for suffix, fn in (("", "mean"), ("_se", "se"))}
        out[policy].update(seconds=time.perf_counter() - start, images=n)
    return out

