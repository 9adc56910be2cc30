"""The RAM's parts against slow references and closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_ram
from modules import CoreNetwork, GlimpseNetwork, LocationNetwork, Retina


def slow_retina(x, l, *, g, k, s):
    """Per-image, per-scale reference: crop S x S around the centre from a zero-padded
    copy, average-pool by S / g, flatten, concatenate."""
    B, C_in, H, W = x.shape
    out = []
    for b in range(B):
        cx = math.floor((l[b, 0].item() + 1) * (W / 2.0))
        cy = math.floor((l[b, 1].item() + 1) * (H / 2.0))
        pieces = []
        for i in range(k):
            side = g * s ** i
            top, left = cy - side // 2, cx - side // 2
            patch = torch.zeros(C_in, side, side)
            for r in range(side):
                for c in range(side):
                    if 0 <= top + r < H and 0 <= left + c < W:
                        patch[:, r, c] = x[b, :, top + r, left + c]
            pooled = F.avg_pool2d(patch[None], s ** i)[0]  # (C_in, g, g)
            pieces.append(pooled.reshape(-1))
        out.append(torch.cat(pieces))
    return torch.stack(out)


@pytest.mark.parametrize("g,k,s,size,channels", [(8, 1, 1, 28, 1), (4, 3, 2, 28, 1), (6, 2, 3, 40, 2),
                                                 (12, 3, 2, 60, 1), (5, 2, 2, 21, 1)])
def test_batched_retina_equals_slow_reference(g, k, s, size, channels):
    torch.manual_seed(0)
    x = torch.rand(12, channels, size, size)
    corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [0.999, -0.999]])
    l = torch.cat([corners, torch.rand(6, 2) * 2 - 1])
    retina = Retina(patch_size=g, num_patches=k, glimpse_scale=s)
    slow = slow_retina(x, l, g=g, k=k, s=s)
    for fast in (retina(retina.prepare(x), l), retina.extract(x, l)):  # the rollout's path, one-glimpse path
        assert fast.shape == (12, channels * k * g * g)
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)


# Corners, the middle of every edge, the centre, just inside two corners, and four inner
# points whose pixel centre (l + 1) * W / 2 is far from an integer, where the fp32 rule and the
# references' float64 arithmetic could floor differently.
RETINA_LOCATIONS = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0],
                                 [0.0, -1.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 0.0],
                                 [-0.999, -0.999], [0.999, 0.999],
                                 [0.3137, -0.7213], [-0.5519, 0.1238], [0.8771, 0.4693], [-0.1302, -0.3861]])


def cropped_retina(x, l, *, g, k, s):
    """Slow reference in x's dtype: per image and scale, slice the S x S patch out of a
    zero-padded copy and average-pool it by S / g."""
    B, C_in, H, W = x.shape
    pad = g * s ** (k - 1)
    out = []
    for b in range(B):
        padded = F.pad(x[b], (pad, pad, pad, pad))  # (C_in, H + 2 pad, W + 2 pad)
        cx = math.floor((l[b, 0].item() + 1) * (W / 2.0))
        cy = math.floor((l[b, 1].item() + 1) * (H / 2.0))
        pieces = []
        for i in range(k):
            side = g * s ** i
            top, left = pad + cy - side // 2, pad + cx - side // 2
            patch = padded[:, top:top + side, left:left + side]  # (C_in, S, S)
            pieces.append(F.avg_pool2d(patch[None], s ** i).reshape(-1))  # C_in * g * g
        out.append(torch.cat(pieces))
    return torch.stack(out)  # (B, K*C_in*g*g)


@pytest.mark.parametrize("g,k,s,height,width,channels", [
    (8, 1, 1, 28, 28, 1),  # MNIST: every patch g x g, read from the padded image
    (6, 3, 1, 28, 28, 2),  # s = 1: three g x g patches, same path
    (8, 2, 2, 28, 28, 3),  # from here on: the summed-area table
    (12, 3, 2, 60, 60, 1),  # the paper's 60x60 retina
    (12, 4, 2, 100, 100, 1),  # the paper's 100x100 retina
    (5, 3, 2, 30, 50, 2),  # H != W
])
def test_retina_equals_slow_reference_at_every_scale_corner_and_edge(g, k, s, height, width, channels):
    torch.manual_seed(0)
    B = len(RETINA_LOCATIONS)
    x = torch.rand(B, channels, height, width)
    retina = Retina(patch_size=g, num_patches=k, glimpse_scale=s)
    slow = slow_retina(x, RETINA_LOCATIONS, g=g, k=k, s=s).view(B, k, -1)  # (B, K, C_in*g*g)
    for fast in (retina(retina.prepare(x), RETINA_LOCATIONS), retina.extract(x, RETINA_LOCATIONS)):
        assert fast.shape == (B, k * channels * g * g)
        for i in range(k):
            error = (fast.view(B, k, -1)[:, i] - slow[:, i]).abs().max().item()
            assert error <= 1e-6, f"scale {i}: max abs error {error:.3g}"


def test_multiscale_retina_carries_no_fp32_accumulation_error():
    """On a 100x100 canvas of [0, 1] pixels the float64 summed-area table gives every pooled
    value to within half an fp32 ulp of the float64 mean (2^-25 ~ 2.98e-8 below 1); fp32
    box sums, as the retina used before, were off by up to ~1e-7."""
    torch.manual_seed(1)
    B = len(RETINA_LOCATIONS)
    x = torch.rand(B, 1, 100, 100)
    retina = Retina(patch_size=12, num_patches=4, glimpse_scale=2)
    exact = cropped_retina(x.double(), RETINA_LOCATIONS, g=12, k=4, s=2)
    fast = retina(retina.prepare(x), RETINA_LOCATIONS)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast.double(), exact, rtol=0, atol=3e-8)
    # The slicing reference and the per-pixel one agree, so the bound above is about the retina.
    torch.testing.assert_close(cropped_retina(x, RETINA_LOCATIONS, g=12, k=4, s=2),
                               slow_retina(x, RETINA_LOCATIONS, g=12, k=4, s=2), rtol=0, atol=1e-6)


def test_retina_exact_window_at_centre_and_zeros_past_the_edge():
    H = W = 28
    coded = (torch.arange(H * W, dtype=torch.float32) + 1).view(1, 1, H, W)  # pixel value = r*W + c + 1
    retina = Retina(patch_size=8, num_patches=1, glimpse_scale=1)
    phi = retina.extract(coded, torch.zeros(1, 2)).view(8, 8)
    torch.testing.assert_close(phi, coded[0, 0, 10:18, 10:18], rtol=0, atol=0)  # 10 pixels each side

    phi = retina.extract(coded, torch.tensor([[-1.0, -1.0]])).view(8, 8)  # centre (0, 0): rows/cols -4..3
    assert (phi[:4] == 0).all() and (phi[:, :4] == 0).all()
    torch.testing.assert_close(phi[4:, 4:], coded[0, 0, :4, :4], rtol=0, atol=0)

    phi = retina.extract(coded, torch.tensor([[1.0, 0.0]])).view(8, 8)  # centre column 28: cols 24..31
    torch.testing.assert_close(phi[:, :4], coded[0, 0, 10:18, 24:28], rtol=0, atol=0)
    assert (phi[:, 4:] == 0).all()


def test_retina_x_is_column_and_y_is_row():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 2, 25] = 1.0  # top-right corner region: row 2, column 25
    retina = Retina(patch_size=4, num_patches=1, glimpse_scale=1)
    assert retina.extract(image, torch.tensor([[0.8, -0.8]])).sum() == 1  # x right, y up
    assert retina.extract(image, torch.tensor([[-0.8, 0.8]])).sum() == 0


def test_fused_glimpse_network_equals_paper_formula():
    torch.manual_seed(0)
    net = GlimpseNetwork(phi_size=64, glimpse_hidden=32, loc_hidden=16, out_size=48)
    phi, l = torch.rand(5, 64), torch.rand(5, 2) * 2 - 1
    expected = F.relu(net.fc_what(F.relu(net.fc_phi(phi))) + net.fc_where(F.relu(net.fc_l(l))))
    torch.testing.assert_close(net(phi, l), expected)


def test_standardised_glimpse_network_equals_the_formula_on_standardised_pixels():
    """pixel_mean/pixel_std fold into W1 and b1: the fused step equals W1 on (phi - m) / s,
    and the gradient reaches W1 and b1."""
    torch.manual_seed(0)
    n = GlimpseNetwork(phi_size=64, glimpse_hidden=16, loc_hidden=8, out_size=12, pixel_mean=0.1307,
                       pixel_std=0.3081)
    phi, l = torch.rand(5, 64), torch.rand(5, 2) * 2 - 1
    expected = F.relu(n.fc_what(F.relu(n.fc_phi((phi - 0.1307) / 0.3081))) + n.fc_where(F.relu(n.fc_l(l))))
    out = n(phi, l)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert n.fc_phi.weight.grad.abs().sum() > 0 and n.fc_phi.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pixel_std"):
        GlimpseNetwork(phi_size=64, glimpse_hidden=16, loc_hidden=8, out_size=12, pixel_std=0.0)


def test_fused_core_equals_paper_formula():
    torch.manual_seed(0)
    core = CoreNetwork(input_size=48, hidden_size=32)
    g, h = torch.rand(5, 48), torch.rand(5, 32)
    torch.testing.assert_close(core(g, (h,))[0], F.relu(core.fc_g(g) + core.fc_h(h)))


def test_log_pi_equals_closed_form_gaussian_density():
    std = 0.17
    policy = LocationNetwork(input_size=4, std=std)
    mu = torch.tensor([[0.1, -0.3], [0.9, 0.5]])
    l = torch.tensor([[0.4, -0.2], [1.3, 0.45]])  # 1.3: outside [-1, 1], as before the clamp
    by_hand = -(((l - mu) ** 2) / (2 * std ** 2) + math.log(std) + 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(policy.log_prob(l, mu), by_hand)
    torch.testing.assert_close(policy.log_prob(l, mu), torch.distributions.Normal(mu, std).log_prob(l).sum(-1))


def make_model(**overrides):
    return tiny_ram(**{"glimpse_hidden": 32, "loc_hidden": 16, "hidden_size": 24, **overrides})


@pytest.mark.parametrize("B", [1, 7])
def test_rollout_shapes_and_consistency(B):
    torch.manual_seed(0)
    model = make_model()
    out = model.rollout(torch.rand(B, 1, 28, 28), 4)
    assert out.h.shape == (B, 4, 24) and out.logits.shape == (B, 4, 10)
    assert out.l.shape == out.mu.shape == (B, 4, 2) and out.log_pi.shape == out.b.shape == (B, 4)
    assert out.l.abs().max() <= 1
    # The first glimpse is chosen from h_0 = 0, so its mean is tanh(b_l) for every image.
    torch.testing.assert_close(out.mu[:, 0], torch.tanh(model.locator.fc.bias).expand(B, 2))
    # b_1 = b(h_0), b_t = b(h_{t-1}); logits from h_t.
    torch.testing.assert_close(out.b[:, 1:], model.baseliner(out.h[:, :-1]))
    torch.testing.assert_close(out.logits, model.classifier(out.h))


def test_rollout_matches_step_by_step_unfused_recomputation():
    """The fused, vectorised rollout equals the paper's equations applied one step at a time."""
    torch.manual_seed(0)
    model = make_model(num_patches=2, glimpse_scale=2)
    x = torch.rand(3, 1, 28, 28)
    out = model.rollout(x, 3)
    h = torch.zeros(3, 24)
    for t in range(3):
        mu = torch.tanh(model.locator.fc(h))
        torch.testing.assert_close(out.mu[:, t], mu)
        l = out.l[:, t]
        phi = model.retina.extract(x, l)
        n = model.glimpse
        g = F.relu(n.fc_what(F.relu(n.fc_phi(phi))) + n.fc_where(F.relu(n.fc_l(l))))
        h = F.relu(model.core.fc_g(g) + model.core.fc_h(h))
        torch.testing.assert_close(out.h[:, t], h)


def test_random_first_glimpse_is_uniform_and_carries_no_policy_gradient():
    """--first_glimpse random: l_1 uniform over [-1, 1]^2 per image, also under the policy mean,
    log_pi_1 = 0 and no gradient from it; glimpses 2..T are the location network's as before."""
    torch.manual_seed(0)
    model = make_model(first_glimpse="random")
    x = torch.rand(4000, 1, 28, 28)
    out = model.rollout(x, 3)
    first = out.l[:, 0]
    assert first.abs().max() <= 1 and first.min() < -0.95 and first.max() > 0.95
    torch.testing.assert_close(first.mean(0), torch.zeros(2), atol=0.05, rtol=0)
    torch.testing.assert_close(first.var(0), torch.full((2,), 1 / 3), atol=0.03, rtol=0)
    assert (out.log_pi[:, 0] == 0).all() and (out.log_pi[:, 1:] != 0).all()
    out.log_pi[:, 0].sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())
    mean = model.rollout(x[:8], 3, policy_mean=True)
    assert mean.l[:, 0].std(0).min() > 0.1  # still random under the policy mean
    torch.testing.assert_close(mean.l[:, 1], model.locator(mean.h[:, 0]).clamp(-1, 1))
    with pytest.raises(ValueError, match="first_glimpse"):
        make_model(first_glimpse="centre")


def test_lstm_rollout_with_one_glimpse_is_one_lstmcell_step():
    torch.manual_seed(0)
    model = make_model(core_net_type="lstm")
    x = torch.rand(4, 1, 28, 28)
    out = model.rollout(x, 1)
    l = out.l[:, 0]
    g = model.glimpse(model.retina.extract(x, l), l)
    cell = torch.nn.LSTMCell(24, 24)
    cell.load_state_dict(model.core.cell.state_dict())
    h, c = cell(g, (torch.zeros(4, 24), torch.zeros(4, 24)))
    torch.testing.assert_close(out.h[:, 0], h)
    torch.testing.assert_close(out.c[:, 0], c)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_step_from_state_before_reproduces_the_rollout(core):
    torch.manual_seed(0)
    model = make_model(core_net_type=core)
    x = torch.rand(3, 1, 28, 28)
    out = model.rollout(x, 4)
    for t in range(4):
        state = model.step(x, out.l[:, t], model.state_before(out, t))
        torch.testing.assert_close(state[0], out.h[:, t])
        if core == "lstm":
            torch.testing.assert_close(state[1], out.c[:, t])
