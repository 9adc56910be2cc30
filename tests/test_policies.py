"""Test-time glimpse policies: the batched EIG scorer against a slow loop, each policy's rollout
against model.step, and the report's comparison end to end."""

import json
import os

import pytest
import torch
from conftest import tiny_ram

from information import entropy
from policies import candidate_grid, eig_per_candidate, policy_rollout
from vae import HiddenStateVAE


def tiny_vae(seed=0, state="h"):
    torch.manual_seed(seed)
    return HiddenStateVAE(hidden_size=12, latent_size=3, vae_hidden=16, canvas_shape=(1, 28, 28),
                          state=state).eval()


def test_candidate_grid_is_row_by_row_over_the_square():
    grid = candidate_grid(3)
    assert grid.tolist() == [[-1, -1], [0, -1], [1, -1], [-1, 0], [0, 0], [1, 0], [-1, 1], [0, 1], [1, 1]]
    assert candidate_grid(7).shape == (49, 2)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("first", [True, False])
def test_batched_eig_per_candidate_equals_a_slow_loop(core, first):
    model, vae = tiny_ram(seed=1, core_net_type=core).eval(), tiny_vae(state="hc" if core == "lstm" else "h")
    B, S, x = 3, 5, torch.rand(3, 1, 28, 28)
    out = model.rollout(x, 2)
    state = model.state_before(out, 0 if first else 1)
    p_prev = None if first else out.logits[:, 0].softmax(-1)
    grid = candidate_grid(3)
    fast = eig_per_candidate(model, vae, state, p_prev, grid, samples=S, generator=torch.Generator().manual_seed(7))

    eps = torch.randn(S, B, 3, generator=torch.Generator().manual_seed(7))
    slow = torch.zeros(B, len(grid))
    for b in range(B):
        if first:
            z = eps[:, b]
        else:
            mu, logvar = vae.encode(torch.cat([part[b] for part in state]))  # h, and c for an LSTM
            z = mu + (0.5 * logvar).exp() * eps[:, b]
        for k, l in enumerate(grid):
            p = []
            for s in range(S):
                canvas = torch.sigmoid(vae.decode_canvas(z[s]))[None]  # (1, 1, 28, 28)
                h = model.step(canvas, l[None], tuple(part[b:b + 1] for part in state))[0]
                p.append(model.classifier(h).softmax(-1)[0])
            p = torch.stack(p)  # (S, C)
            slow[b, k] = entropy(p.mean(0)) - entropy(p).mean()
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    assert (fast >= -1e-6).all()


@pytest.mark.parametrize("policy", ["random", "eig"])
def test_a_policy_rollout_is_the_glimpses_it_chose(policy):
    model, vae = tiny_ram(seed=2, core_net_type="lstm").eval(), tiny_vae(state="hc")
    x, grid = torch.rand(4, 1, 28, 28), candidate_grid(3)
    out = policy_rollout(model, x, 3, policy=policy, vae=vae, grid=grid, samples=4,
                         generator=torch.Generator().manual_seed(3))
    assert out.h.shape == (4, 3, 12) and out.c.shape == (4, 3, 12) and out.logits.shape[:2] == (4, 3)
    assert out.l.abs().max() <= 1
    generator = torch.Generator().manual_seed(3)
    state = model.core.init_state(4, x.device, x.dtype)
    p_prev = None
    for t in range(3):
        if policy == "eig":
            best = eig_per_candidate(model, vae, state, p_prev, grid, samples=4, generator=generator).argmax(1)
            torch.testing.assert_close(out.l[:, t], grid[best])
        else:
            torch.testing.assert_close(out.l[:, t], torch.rand(4, 2, generator=generator) * 2 - 1)
        state = model.step(x, out.l[:, t], state)
        p_prev = model.classifier(state[0]).softmax(-1)
        torch.testing.assert_close(out.h[:, t], state[0], atol=1e-5, rtol=1e-5)


def test_the_learned_policy_is_the_models_own_rollout():
    model, x = tiny_ram(seed=4).eval(), torch.rand(5, 1, 28, 28)
    torch.manual_seed(9)
    out = policy_rollout(model, x, 3, policy="learned")
    torch.manual_seed(9)
    ref = model.rollout(x, 3)
    torch.testing.assert_close(out.l, ref.l)
    torch.testing.assert_close(out.logits, ref.logits)


def test_the_report_compares_the_policies(run_main, tmp_path):
    small = ["--subset=64", "--batch_size=32", "--hidden_size=16", "--glimpse_hidden=8", "--loc_hidden=8",
             "--num_glimpses=2", "--plot_freq=0", "--vae_epochs=1", "--vae_hidden=16", "--latent_size=3",
             "--eig_samples=2", "--run_name=pol"]
    run_main(*small, "--epochs=1")
    report = run_main(*small, "--is_train=False", "--policy", "learned", "eig", "random", "--eig_candidates=3",
                      "--policy_images=40")
    assert list(report["policies"]) == ["learned", "eig", "random"]
    for p in report["policies"].values():
        assert p["images"] == 40 and len(p["accuracy"]) == len(p["ig"]) == len(p["eig_se"]) == 2
        assert all(0 <= a <= 1 for a in p["accuracy"]) and all(e >= 0 for e in p["eig"])
    folder = tmp_path / "report" / "pol"
    assert (folder / "policies.png").stat().st_size > 0
    assert json.loads((folder / "metrics.json").read_text())["policies"]["eig"]["images"] == 40
    assert "## Glimpse policies" in (folder / "summary.md").read_text()
    plain = run_main(*small, "--is_train=False")
    assert plain["policies"] is None and not os.path.exists(folder / "policies.png")
