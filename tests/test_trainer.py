"""Rewards, returns and losses on hand-made tensors; gradients of the REINFORCE term."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_ram
from losses import (ac2_advantage, advantages, baseline_loss, classification_loss, hybrid_loss,
                     reinforce_loss, returns, rewards)


def test_paper_reward_is_final_correctness_only():
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [0.0, 5.0]],
                           [[0.0, 5.0], [0.0, 5.0], [5.0, 0.0]]])  # (B=2, T=3, C=2)
    y = torch.tensor([1, 1])
    assert rewards(logits, y).tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_returns_are_reverse_cumulative_sums():
    r = torch.tensor([[1.0, 0.0, 2.0, 0.5], [0.0, 0.0, 0.0, 1.0]])
    assert returns(r).tolist() == [[3.5, 2.5, 2.5, 0.5], [1.0, 1.0, 1.0, 1.0]]


def test_reinforce_and_baseline_losses_by_hand():
    log_pi = torch.tensor([[-1.0, -2.0], [0.5, 1.0]])
    A = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    # -mean_b sum_t log_pi * A = -((-1 + 2) + (1 + 0)) / 2 = -1
    assert reinforce_loss(log_pi, A).item() == -1.0
    b = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    G = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert baseline_loss(b, G).item() == (0.25 + 0.25 + 0 + 1) / 4


def test_reinforce_gradient_wrt_policy_mean():
    """d/dmu of -sum_t log pi_t A_t / B is -(l - mu) / std^2 * A / B."""
    std = 0.2
    mu = torch.tensor([[[0.1, -0.2], [0.3, 0.0]]], requires_grad=True)  # (1, 2, 2)
    l = torch.tensor([[[0.15, -0.5], [0.2, 0.4]]])
    A = torch.tensor([[2.0, -1.0]])
    log_pi = torch.distributions.Normal(mu, std).log_prob(l).sum(-1)
    reinforce_loss(log_pi, A).backward()
    expected = -(l - mu.detach()) / std ** 2 * A[..., None]
    torch.testing.assert_close(mu.grad, expected)


def model_and_batch(reinforce_core):
    model = tiny_ram(seed=0, reinforce_core=reinforce_core)
    return model, torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))


def test_reinforce_term_trains_only_the_policy_by_default():
    model, x, y = model_and_batch(reinforce_core=False)
    out = model.rollout(x, 3)
    terms = hybrid_loss(out, y, actor_weight=1.0)
    terms["reinforce"].backward()
    for name, p in model.named_parameters():
        reached = p.grad is not None and p.grad.abs().sum() > 0
        assert reached == name.startswith("locator."), name


def test_reinforce_term_reaches_the_core_when_asked():
    model, x, y = model_and_batch(reinforce_core=True)
    out = model.rollout(x, 3)
    hybrid_loss(out, y, actor_weight=1.0)["reinforce"].backward()
    assert model.core.fc_h.weight.grad.abs().sum() > 0
    assert model.glimpse.fc_phi.weight.grad.abs().sum() > 0
    assert model.classifier.fc.weight.grad is None  # the classifier is never on the policy's path


def test_hybrid_loss_combines_terms_with_the_actor_weight():
    model, x, y = model_and_batch(reinforce_core=False)
    out = model.rollout(x, 3)
    terms = hybrid_loss(out, y, actor_weight=0.25)
    torch.testing.assert_close(terms["loss"], terms["nll"] + terms["baseline"] + 0.25 * terms["reinforce"])
    # The baseline loss trains only the baseline network.
    model.zero_grad()
    terms["baseline"].backward()
    for name, p in model.named_parameters():
        reached = p.grad is not None and p.grad.abs().sum() > 0
        assert reached == name.startswith("baseliner."), name


NEG = float("-inf")


def hand_made_logits():
    """C = 4; p_1 uniform over two classes, p_2 certain: H = log 4, log 2, 0."""
    return torch.tensor([[[0.0, 0.0, NEG, NEG], [0.0, NEG, NEG, NEG]]])  # (B=1, T=2, C=4)


def test_entropies_and_information_gain_by_hand():
    from information import entropies, information_gain

    probs = hand_made_logits().softmax(-1)
    torch.testing.assert_close(entropies(probs), torch.tensor([[math.log(4), math.log(2), 0.0]]))
    torch.testing.assert_close(information_gain(probs), torch.tensor([[math.log(2), math.log(2)]]))


def test_shaped_reward_and_its_returns_by_hand():
    logits, y = hand_made_logits(), torch.tensor([0])
    r = rewards(logits, y, reward="infogain", beta=0.5)
    torch.testing.assert_close(r, torch.tensor([[0.5 * math.log(2), 0.5 * math.log(2) + 1.0]]))
    torch.testing.assert_close(returns(r), torch.tensor([[math.log(2) + 1.0, 0.5 * math.log(2) + 1.0]]))
    # A wrong final answer keeps the information-gain part only.
    torch.testing.assert_close(rewards(logits, torch.tensor([1]), reward="infogain", beta=2.0),
                               torch.tensor([[2 * math.log(2), 2 * math.log(2)]]))
    assert rewards(logits, y).tolist() == [[0.0, 1.0]]


def test_ac2_and_reinforce_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[0.5, 1.0, 2.0]], requires_grad=True)
    A = ac2_advantage(r, b)
    torch.testing.assert_close(A, torch.tensor([[1.0 + 1.0 - 0.5, 2.0 + 2.0 - 1.0, 3.0 - 2.0]]))
    assert not A.requires_grad, "the critic must not be trained through the advantage"
    torch.testing.assert_close(advantages(r, b, training_mode="ac2"), A)
    torch.testing.assert_close(advantages(r, b, training_mode="reinforce"),
                               torch.tensor([[6.0 - 0.5, 5.0 - 1.0, 3.0 - 2.0]]))


def test_classification_loss_on_every_glimpse_is_the_mean_over_t():
    logits = torch.randn(3, 4, 5)
    y = torch.tensor([0, 2, 4])
    each = torch.stack([F.cross_entropy(logits[:, t], y) for t in range(4)])
    torch.testing.assert_close(classification_loss(logits, y, every_glimpse=True), each.mean())
    torch.testing.assert_close(classification_loss(logits, y), each[-1])


@pytest.mark.parametrize("training_mode", ["reinforce", "ac2"])
def test_shaped_ac2_loss_trains_policy_only_through_reinforce(training_mode):
    model, x, y = model_and_batch(reinforce_core=False)
    out = model.rollout(x, 3)
    terms = hybrid_loss(out, y, reward="infogain", training_mode=training_mode)
    terms["reinforce"].backward()
    for name, p in model.named_parameters():
        reached = p.grad is not None and p.grad.abs().sum() > 0
        assert reached == name.startswith("locator."), name


def test_policy_mean_rollout_looks_at_mu_and_draws_the_same_noise():
    model, x, _ = model_and_batch(reinforce_core=False)
    torch.manual_seed(3)
    greedy = model.rollout(x, 4, policy_mean=True)
    after_greedy = torch.rand(1)
    torch.manual_seed(3)
    sampled = model.rollout(x, 4)
    assert torch.equal(torch.rand(1), after_greedy)  # the RNG advanced the same way
    torch.testing.assert_close(greedy.l, greedy.mu.clamp(-1, 1), rtol=0, atol=0)
    assert not torch.equal(sampled.l, sampled.mu.clamp(-1, 1))
    # The first location comes from h_0 = 0 in both, so only the noise separates them.
    torch.testing.assert_close(sampled.mu[:, 0], greedy.mu[:, 0])


def test_cosine_lr_is_torchs_cosine_annealing_and_reaches_zero_after_the_last_epoch():
    from trainer import cosine_lr

    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([p], lr=0.3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7)
    for epoch in range(1, 8):
        assert cosine_lr(0.3, epoch, 7) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()
    assert cosine_lr(0.3, 1, 7) == 0.3 and cosine_lr(0.3, 8, 7) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(0.3, 4, 6) == pytest.approx(0.15)


def test_annealed_std_runs_a_half_cosine_from_std_to_std_final():
    from trainer import annealed_std

    assert [annealed_std(0.2, None, e, 5) for e in (1, 3, 5)] == [0.2, 0.2, 0.2]
    stds = [annealed_std(0.2, 0.05, e, 5) for e in range(1, 6)]
    assert stds[0] == pytest.approx(0.2) and stds[-1] == pytest.approx(0.05) and stds[2] == pytest.approx(0.125)
    assert all(a > b for a, b in zip(stds, stds[1:]))
    assert annealed_std(0.2, 0.05, 1, 1) == pytest.approx(0.05)  # a one-epoch run trains the final policy
    assert annealed_std(0.2, 0.05, 9, 5) == pytest.approx(0.05)  # past the schedule: the final value


@pytest.mark.parametrize("num_patches", [1, 3])
def test_bf16_autocast_loss_and_gradients_are_close_to_fp32(num_patches):
    """--precision bf16: the same rollout noise gives a loss and gradients within bf16's
    rounding of fp32's, and every output of the rollout is fp32. The policy runs in fp32; its
    last layer is zeroed so that both precisions look at the same pixels (a location that
    rounds to another pixel would be a different glimpse, not a rounding error)."""
    from utils import precision_context

    model = tiny_ram(seed=0, num_patches=num_patches, glimpse_scale=2, hidden_size=64, glimpse_hidden=64,
                     loc_hidden=32, locator_hidden=32)
    with torch.no_grad():
        model.locator.fc.weight.zero_()
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    grads = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)
        model.zero_grad()
        with precision_context(precision, torch.device("cpu")):
            out = model.rollout(x, 4)
            terms = hybrid_loss(out, y)
        assert all(v.dtype == torch.float32 for v in (out.h, out.logits, out.l, out.mu, out.log_pi, out.b))
        (terms["nll"] + terms["baseline"]).backward()
        mus = grads.setdefault("mu", [])
        mus.append(out.mu)
        grads[precision] = (terms["nll"].item(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(grads["mu"][0], grads["mu"][1], rtol=0, atol=0)
    (nll32, g32), (nll16, g16) = grads["fp32"], grads["bf16"]
    assert nll16 == pytest.approx(nll32, rel=2e-2)
    flat32, flat16 = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
    cosine = F.cosine_similarity(flat32, flat16, dim=0).item()
    assert cosine > 0.99 and (flat16 - flat32).norm() < 0.1 * flat32.norm()
