"""The hidden-state VAE, its ELBO and training on a frozen RAM, and the information measures,
against closed forms, hand-worked values and slow references."""

import dataclasses
import json
import math
import os

import pytest
import torch
from torch.distributions import Categorical, Normal
from torch.utils.data import DataLoader, TensorDataset

from arguments import DATASETS, ESTIMATORS, ConfigError
from conftest import tiny_ram
from information import (Bank, Imagination, belief_weights, calibration, eig_from_samples, entropy, expected_information_gain, fit_probe,
                         fit_temperature, glimpse_nll, imagine, information_gain, kl_categorical,
                         probe_logits, spread_check, tilted_weights)
from utils import atomic_save
from vae import (VAE_FORMAT, HiddenStateVAE, decoded_per_glimpse, elbo_loss, glimpse_batch, hidden_states,
                 kl_divergence, load_vae, normalise_settings, reconstruction_errors, save_vae, train_vae)

D, Z, C = 12, 4, 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_vae(canvas_shape=(1, 28, 28), seed=1, clean_shape=(1, 28, 28), decoder="mlp", state="h"):
    torch.manual_seed(seed)
    return HiddenStateVAE(hidden_size=D, latent_size=Z, vae_hidden=32, canvas_shape=canvas_shape,
                          clean_shape=clean_shape, decoder=decoder, state=state)


def bar_images(n, size=28, seed=0):
    """Clean binary 'digits': class k is a vertical bar at column 4 + 5k, rows 6..21."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.zeros(n, 1, size, size)
    for k in range(4):  # a loop over the 4 classes, not over images
        x[y == k, :, 6:22, 4 + 5 * k] = 1.0
    return x, y


# ----------------------------------------------------------------------------- the VAE

def test_kl_divergence_matches_torch_and_is_zero_at_prior():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3, Z), torch.randn(5, 3, Z)
    expected = torch.distributions.kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)
    assert kl_divergence(torch.zeros(2, Z), torch.zeros(2, Z)).tolist() == [0.0, 0.0]
    # By hand: mu = (1, 0), logvar = (0, log 2): 0.5 * ((1 + 1 - 1 - 0) + (2 + 0 - 1 - log 2))
    got = kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, math.log(2.0)]))
    assert got.item() == pytest.approx(0.5 * (1 + 1 - math.log(2.0)), abs=1e-6)


def test_elbo_loss_by_hand():
    """Zero logits cost log 2 per pixel whatever the target; KL is averaged and weighted by beta."""
    N = 3
    clean = torch.rand(N, 1, 28, 28)
    mu = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0] * 4, [0.0, 2.0, 0.0, 0.0]])  # KL 0.5, 0, 2
    terms = elbo_loss(clean_logits=torch.zeros(N, 1, 28, 28), clean=clean, mu=mu, logvar=torch.zeros(N, Z),
                      beta=2.0)
    assert terms["bce_clean"].item() == pytest.approx(784 * math.log(2), rel=1e-6)
    assert terms["bce_canvas"].item() == 0.0
    assert terms["kl"].item() == pytest.approx(2.5 / 3, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(784 * math.log(2) + 2.0 * 2.5 / 3, rel=1e-6)

    canvas = torch.rand(N, 1, 40, 40)
    terms = elbo_loss(clean_logits=torch.zeros(N, 1, 28, 28), clean=clean, mu=mu, logvar=torch.zeros(N, Z),
                      beta=0.0, canvas_logits=torch.zeros(N, 1, 40, 40), canvas=canvas)
    assert terms["bce_canvas"].item() == pytest.approx(1600 * math.log(2), rel=1e-6)
    assert terms["loss"].item() == pytest.approx((784 + 1600) * math.log(2), rel=1e-6)


def test_elbo_loss_rejects_targets_outside_the_unit_interval():
    mu = logvar = torch.zeros(2, Z)
    bad = torch.rand(2, 1, 28, 28) * 2 - 0.5  # e.g. normalised images: not a Bernoulli target
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        elbo_loss(clean_logits=torch.zeros(2, 1, 28, 28), clean=bad, mu=mu, logvar=logvar, beta=1.0)
    with pytest.raises(ValueError, match="canvas"):
        elbo_loss(clean_logits=torch.zeros(2, 1, 28, 28), clean=bad.clamp(0, 1), mu=mu, logvar=logvar,
                  beta=1.0, canvas_logits=torch.zeros(2, 1, 40, 40), canvas=torch.full((2, 1, 40, 40), 1.5))


def test_vae_heads_and_shapes():
    plain = tiny_vae((1, 28, 28))
    assert plain.canvas_decoder is None and not plain.separate_canvas
    h = torch.randn(3, 5, D)
    z = torch.randn(3, 5, Z)
    assert plain.decode_clean(z).shape == (3, 5, 1, 28, 28)
    torch.testing.assert_close(plain.decode_canvas(z), plain.decode_clean(z), rtol=0, atol=0)
    out = plain(h)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 5, Z)
    assert out.clean_logits.shape == (3, 5, 1, 28, 28) and out.canvas_logits is None

    cluttered = tiny_vae((1, 60, 60))
    assert cluttered.separate_canvas
    assert cluttered.decode_canvas(z).shape == (3, 5, 1, 60, 60)
    assert cluttered(h).canvas_logits.shape == (3, 5, 1, 60, 60)
    with pytest.raises(ValueError, match="latent_size"):
        HiddenStateVAE(hidden_size=D, latent_size=0, vae_hidden=8, canvas_shape=(1, 28, 28))
    for bad in ((28, 28), (1, 28, 0), 28, (1.0, 28, 28)):
        with pytest.raises(ValueError, match="canvas_shape must be 3 positive ints"):
            HiddenStateVAE(hidden_size=D, latent_size=Z, vae_hidden=8, canvas_shape=bad)


def test_reparameterised_sample_has_the_posterior_moments():
    vae = tiny_vae()
    mu, logvar = torch.tensor([[0.5, -1.0, 2.0, 0.0]]), torch.tensor([[0.0, math.log(4.0), -2.0, 1.0]])
    z = vae.reparameterise(mu.expand(20000, Z), logvar.expand(20000, Z),
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), (0.5 * logvar[0]).exp(), atol=0.05, rtol=0.02)


def test_decoded_means_can_fall_below_one_half():
    """The original study's decoder could never output less than 0.5; ours spans (0, 1)."""
    vae = tiny_vae()
    last = vae.clean_decoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-3.0)
    decoded = decoded_per_glimpse(vae, torch.randn(2, 3, D))
    assert decoded.shape == (2, 3, 1, 28, 28)
    torch.testing.assert_close(decoded, torch.full_like(decoded, 1 / (1 + math.exp(3.0))))
    assert decoded.max() < 0.05


@pytest.mark.parametrize("canvas_shape", [(1, 28, 28), (1, 60, 60), (3, 37, 50)])
def test_conv_decoder_draws_the_canvas_and_says_so_in_its_settings(canvas_shape):
    """--vae_decoder conv: the head EIG imagines from is a ConvDecoder of the canvas shape (any
    leading dims, H and W not multiples of 8); a separate clean head stays an MLP; only a conv
    VAE names its decoder, and the same settings build the same network."""
    from vae import ConvDecoder

    vae = tiny_vae(canvas_shape, decoder="conv")
    z = torch.randn(3, 5, Z)
    assert vae.decode_canvas(z).shape == (3, 5, *canvas_shape)
    assert vae.decode_clean(z).shape == (3, 5, 1, 28, 28)
    canvas_head = vae.canvas_decoder if vae.separate_canvas else vae.clean_decoder
    assert isinstance(canvas_head, ConvDecoder)
    assert not vae.separate_canvas or not isinstance(vae.clean_decoder, ConvDecoder)
    # Each image is decoded on its own: a batch of one gives the same logits.
    torch.testing.assert_close(vae.decode_canvas(z[1, 2]), vae.decode_canvas(z)[1, 2])
    assert vae.settings["decoder"] == "conv" and "decoder" not in tiny_vae(canvas_shape).settings
    again = HiddenStateVAE.from_settings(vae.settings)
    again.load_state_dict(vae.state_dict())
    torch.testing.assert_close(again.decode_canvas(z), vae.decode_canvas(z), rtol=0, atol=0)
    with pytest.raises(ValueError, match="decoder must be one of mlp, conv"):
        tiny_vae(canvas_shape, decoder="deconv")


def test_an_lstm_runs_vae_reads_h_and_c_and_says_so_in_its_settings(tmp_path):
    """An LSTM's VAE encodes the state (h_t, c_t) (2D inputs): its h_t = o_t * tanh(c_t) shows
    the cell's memory only through the output gate. from_config picks it by the core; an
    "h" VAE (every VAE before it) is refused for an LSTM run in one line, and an "hc" VAE
    cannot be fed h alone."""
    from argparse import Namespace
    settings = dict(hidden_size=D, latent_size=Z, vae_hidden=32, vae_decoder="mlp")
    made = {core: HiddenStateVAE.from_config(Namespace(**settings, core_net_type=core), canvas_shape=(1, 28, 28))
            for core in ("rnn", "lstm")}
    assert made["rnn"].state == "h" and "state" not in made["rnn"].settings
    assert made["lstm"].state == "hc" and made["lstm"].settings["state"] == "hc"
    assert made["lstm"].encoder[0].in_features == 2 * D and made["rnn"].encoder[0].in_features == D
    h, c = torch.randn(5, 3, D), torch.randn(5, 3, D)
    torch.testing.assert_close(made["lstm"].state_input(h, c), torch.cat([h, c], -1), atol=0, rtol=0)
    assert made["rnn"].state_input(h, c) is h
    assert made["lstm"].encode(made["lstm"].state_input(h, c))[0].shape == (5, 3, Z)
    with pytest.raises(ValueError, match="reads an LSTM's cell state c"):
        made["lstm"].state_input(h)
    with pytest.raises(ValueError, match="state must be one of h, hc"):
        tiny_vae(state="c")
    cpu = torch.device("cpu")
    for core, vae in made.items():
        save_vae(str(tmp_path / f"{core}.pt"), vae, None, 1, {})
    again, _ = load_vae(str(tmp_path / "lstm.pt"), cpu, expected=made["lstm"].settings)
    assert again.state == "hc" and again.settings == made["lstm"].settings
    with pytest.raises(ConfigError, match="state='h' in the checkpoint but 'hc' here"):
        load_vae(str(tmp_path / "rnn.pt"), cpu, expected=made["lstm"].settings)


def test_a_conv_vae_checkpoint_is_not_taken_for_an_mlp_one(tmp_path):
    """An MLP checkpoint (which, like every VAE before --vae_decoder, names no decoder) loads
    as mlp; asked for the other decoder, either is refused in one line."""
    cpu = torch.device("cpu")
    mlp, conv = tiny_vae((1, 60, 60)), tiny_vae((1, 60, 60), decoder="conv")
    for name, vae in (("mlp", mlp), ("conv", conv)):
        save_vae(str(tmp_path / f"{name}.pt"), vae, None, 1, {"num_glimpses": 6})
    load_vae(str(tmp_path / "mlp.pt"), cpu, expected=mlp.settings)
    load_vae(str(tmp_path / "conv.pt"), cpu, expected=conv.settings)
    with pytest.raises(ConfigError, match="decoder='mlp' in the checkpoint but 'conv' here"):
        load_vae(str(tmp_path / "mlp.pt"), cpu, expected=conv.settings)
    with pytest.raises(ConfigError, match="decoder='conv' in the checkpoint but 'mlp' here"):
        load_vae(str(tmp_path / "conv.pt"), cpu, expected=mlp.settings)


def test_elbo_decreases_when_overfitting_a_fixed_batch():
    torch.manual_seed(0)
    vae = tiny_vae()
    clean, y = bar_images(8)
    h = torch.randn(4, D)[y]  # one hidden state per class
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)

    def loss():
        out = vae(h)
        return elbo_loss(clean_logits=out.clean_logits, clean=clean, mu=out.mu, logvar=out.logvar,
                         beta=1.0)["loss"]

    first = loss().item()
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        last = loss().item()
    assert first > 500 and last < 0.25 * first, (first, last)
    decoded = decoded_per_glimpse(vae, h[:, None])[:, 0]  # (8, 1, 28, 28)
    assert decoded[clean == 0].mean() < 0.1 and decoded[clean == 1].mean() > 0.5


# ----------------------------------------------------------------------------- RGB, H != W

RGB = (3, 48, 64)  # an image folder's shape: the clean target is the image itself


def test_rgb_vae_has_no_canvas_head_and_decodes_c_h_w():
    vae = tiny_vae(RGB, clean_shape=RGB)
    assert not vae.separate_canvas and vae.canvas_decoder is None
    assert vae.settings == {"hidden_size": D, "latent_size": Z, "vae_hidden": 32, "clean_shape": RGB,
                            "canvas_shape": RGB}
    out = vae(torch.randn(2, 5, D))
    assert out.clean_logits.shape == (2, 5, 3, 48, 64) and out.canvas_logits is None
    decoded = decoded_per_glimpse(vae, torch.randn(2, 5, D))
    assert decoded.shape == (2, 5, 3, 48, 64) and 0 < decoded.min() and decoded.max() < 1
    # A grey non-square canvas with the 28x28 digit as clean target keeps a canvas head.
    grey = tiny_vae((1, 30, 50))
    assert grey.separate_canvas and grey.decode_canvas(torch.randn(4, Z)).shape == (4, 1, 30, 50)


def test_rgb_elbo_by_hand():
    """Decoder logits fixed per channel (0, log 3, -log 3, i.e. means 1/2, 3/4, 1/4) and
    q(z | h) = N((1, 0, 0, 0), I): the ELBO of any h is a closed form."""
    vae = tiny_vae(RGB, clean_shape=RGB)
    with torch.no_grad():
        vae.clean_decoder[-1].weight.zero_()
        vae.clean_decoder[-1].bias.copy_(torch.tensor([0.0, math.log(3), -math.log(3)])
                                         .repeat_interleave(48 * 64))
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]))  # mu, logvar
    N, P = 2, 48 * 64
    clean = torch.stack([torch.rand(N, 48, 64), torch.ones(N, 48, 64), torch.full((N, 48, 64), 0.5)], 1)
    out = vae(torch.randn(N, D))
    terms = elbo_loss(clean_logits=out.clean_logits, clean=clean, mu=out.mu, logvar=out.logvar, beta=2.0)
    bce = P * (math.log(2) - math.log(0.75) - 0.5 * (math.log(0.25) + math.log(0.75)))
    assert terms["bce_clean"].item() == pytest.approx(bce, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(0.5, rel=1e-6) and terms["bce_canvas"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(bce + 2.0 * 0.5, rel=1e-5)


def test_rgb_reconstruction_errors_and_glimpse_batch_by_hand():
    """On (B=1, T=2, 3, 4, 5): the means are over all 3 * 4 * 5 = 60 values."""
    clean = torch.zeros(1, 3, 4, 5)
    clean[0, 1, 2, 3] = 1.0  # one green pixel
    decoded = torch.full((1, 2, 3, 4, 5), 0.5)
    decoded[0, 1] = clean[0]
    decoded[0, 1, 1, 2, 3] = 0.8
    mse, bce = reconstruction_errors(decoded, clean)
    assert mse[0, 0].item() == pytest.approx(0.25, rel=1e-6)
    assert mse[0, 1].item() == pytest.approx(0.04 / 60, rel=1e-5)
    assert bce[0, 0].item() == pytest.approx(math.log(2), rel=1e-6)
    assert bce[0, 1].item() == pytest.approx((-math.log(0.8) + 59 * -math.log(1 - 1e-6)) / 60, rel=1e-4)
    h = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1).expand(2, 3, D)
    images = torch.arange(2, dtype=torch.float32).view(2, 1, 1, 1).expand(2, *RGB)
    hf, cf, vf = glimpse_batch(h, images)
    assert hf.shape == (6, D) and cf.shape == (6, *RGB) and vf is None
    assert cf[:, 2, 47, 63].tolist() == [0, 0, 0, 1, 1, 1]


def test_rgb_vae_trains_on_a_frozen_rgb_ram():
    """One step of train_vae on (x, x, y) batches of RGB 48x64 images, the clean target being x."""
    model, vae = tiny_ram(seed=0, in_channels=3), tiny_vae(RGB, clean_shape=RGB)
    x = torch.rand(8, *RGB, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, x, torch.zeros(8, dtype=torch.long)), batch_size=8)
    before = [p.clone() for p in vae.parameters()]
    ram = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_vae(vae, model, {"train": loader, "valid": loader}, num_glimpses=3, epochs=1, lr=1e-3,
                        beta=1.0, device=torch.device("cpu"))
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ram.items())
    train, valid = history[0]["train"], history[0]["valid"]
    assert train["bce_canvas"] == 0.0 and valid["bce_canvas"] == 0.0
    # Per image, a sigmoid(0)-ish decoder costs about log 2 per value, over 3 * 48 * 64 values.
    assert 0.5 * math.log(2) * 9216 < train["bce_clean"] < 1.5 * math.log(2) * 9216
    assert len(valid["mse_t"]) == 3 and all(0 < m < 0.5 for m in valid["mse_t"])


# ----------------------------------------------------------------------------- pure maths

def test_reconstruction_errors_perfect_decoder_and_by_hand():
    clean, _ = bar_images(3)
    decoded = clean[:, None].expand(3, 2, 1, 28, 28).clone()
    mse, bce = reconstruction_errors(decoded, clean)
    assert mse.shape == bce.shape == (3, 2)
    assert mse.abs().max() == 0.0
    assert bce.max() < 2e-6  # -log(1 - eps) with the clamp eps = 1e-6

    # Tiny example: 1 image, 2 glimpses, a 28x28 clean image with one pixel on.
    clean = torch.zeros(1, 1, 28, 28)
    clean[0, 0, 0, 0] = 1.0
    decoded = torch.full((1, 2, 1, 28, 28), 0.5)
    decoded[0, 1] = 0.0
    decoded[0, 1, 0, 0, 0] = 0.8
    mse, bce = reconstruction_errors(decoded, clean)
    P = 784
    assert mse[0, 0].item() == pytest.approx(0.25, rel=1e-6)  # every pixel off by 0.5
    assert mse[0, 1].item() == pytest.approx(0.04 / P, rel=1e-5)  # only the on-pixel, off by 0.2
    assert bce[0, 0].item() == pytest.approx(math.log(2), rel=1e-6)
    expected = (-math.log(0.8) + (P - 1) * -math.log(1 - 1e-6)) / P  # zeros clamped to eps
    assert bce[0, 1].item() == pytest.approx(expected, rel=1e-4)


def test_entropy_and_categorical_kl_by_hand_and_safe_at_zero():
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4])
    torch.testing.assert_close(entropy(p), torch.tensor([math.log(2), 0.0, math.log(4)]))
    q = torch.tensor([0.25] * 4)
    # KL(p || uniform) = log 4 - H(p)
    torch.testing.assert_close(kl_categorical(p, q), torch.tensor([math.log(2), math.log(4), 0.0]))
    torch.testing.assert_close(kl_categorical(p, Categorical(probs=p).probs), torch.zeros(3), rtol=0, atol=0)
    expected = torch.distributions.kl_divergence(Categorical(probs=torch.tensor([0.2, 0.8])),
                                                 Categorical(probs=torch.tensor([0.6, 0.4])))
    torch.testing.assert_close(kl_categorical(torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4])), expected)


def test_information_gain_by_hand():
    # C = 4: H_0 = log 4; then H = log 2, log 2, 0 for image 0; log 4, 0, log 4 for image 1.
    probs = torch.tensor([[[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 1, 0]],
                          [[0.25] * 4, [0, 0, 0, 1], [0.25] * 4]])  # (B=2, T=3, C=4)
    ig = information_gain(probs)
    L2, L4 = math.log(2), math.log(4)
    torch.testing.assert_close(ig, torch.tensor([[L4 - L2, 0.0, L2], [0.0, L4, -L4]]))
    torch.testing.assert_close(ig.sum(1), L4 - entropy(probs[:, -1]))


def mean_kl(p_prev, p_next):
    return kl_categorical(p_next, p_prev.unsqueeze(0)).mean(0)


def test_eig_of_a_fully_revealing_observation_is_the_prior_entropy():
    """If the next glimpse reveals the class, p_next^s = one-hot(c_s) with c_s ~ p_prev: every
    imagined belief is certain, so EIG = H(p_bar), p_bar the frequencies of c_s, -> H(p_prev)."""
    g = torch.Generator().manual_seed(0)
    p_prev = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.25] * 4, [0.9, 0.05, 0.05, 0.0]])  # (B=3, C=4)
    S = 20000
    c = torch.multinomial(p_prev, S, replacement=True, generator=g).T  # (S, B)
    p_next = torch.nn.functional.one_hot(c, 4).float()  # (S, B, C)
    eig, gap = eig_from_samples(p_prev, p_next, estimator="plugin")
    assert eig.shape == gap.shape == (3,)
    torch.testing.assert_close(eig, entropy(p_next.mean(0)))
    for estimator in ESTIMATORS:
        eig, gap = eig_from_samples(p_prev, p_next, estimator=estimator)
        torch.testing.assert_close(eig, entropy(p_prev), atol=0.01, rtol=0)
        assert (gap.abs() < 1e-3).all()  # the samples average to the prior: consistent
        torch.testing.assert_close(eig + gap, mean_kl(p_prev, p_next), atol=1e-6, rtol=0)


def test_the_jackknife_removes_the_small_sample_bias_the_plugin_moves_into_the_gap():
    """Beliefs softmax(3 z), z ~ N(0, I): their mean is uniform by symmetry, so with p_prev
    uniform the true gap is 0 and the true EIG is log C - E H(p). From S = 8 samples per image
    over 20,000 images, the plugin puts about 0.27 nats of EIG into the gap; the jackknife
    leaves under 0.03, and its per-image gaps fall on both sides of 0."""
    g = torch.Generator().manual_seed(5)
    C, S, B = 10, 8, 20_000
    true_eig = math.log(C) - entropy((3 * torch.randn(10**6, C, generator=g)).softmax(-1)).mean()
    p_next = (3 * torch.randn(S, B, C, generator=g)).softmax(-1)
    p_prev = torch.full((B, C), 1 / C)
    eig, gap = eig_from_samples(p_prev, p_next, estimator="plugin")
    assert gap.mean() > 0.2 and true_eig - eig.mean() > 0.2
    eig, gap = eig_from_samples(p_prev, p_next, estimator="jackknife")
    assert abs(gap.mean()) < 0.03 and abs(eig.mean() - true_eig) < 0.03
    assert 0.2 < (gap < 0).float().mean() < 0.8 and (eig >= 0).all()
    torch.testing.assert_close(eig + gap, mean_kl(p_prev, p_next), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown estimator"):
        eig_from_samples(p_prev, p_next, estimator="mle")


def test_eig_of_an_uninformative_observation_is_zero_whatever_the_gap():
    g = torch.Generator().manual_seed(1)
    p_prev = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]])
    eig, gap = eig_from_samples(p_prev, p_prev.expand(500, 2, 4))
    assert (eig < 1e-6).all() and (gap < 1e-6).all()
    # Identical imagined beliefs that differ from the real one: no information, all gap.
    other = torch.tensor([[0.1, 0.1, 0.1, 0.7], [0.25] * 4])
    eig, gap = eig_from_samples(p_prev, other.expand(16, 2, 4))
    assert (eig < 1e-6).all()
    torch.testing.assert_close(gap, kl_categorical(other, p_prev))
    # A little noise that carries no information: far below the fully revealing case.
    noisy = (p_prev.log() + 0.01 * torch.randn(500, 2, 4, generator=g)).softmax(-1)
    eig, _ = eig_from_samples(p_prev, noisy)
    assert (eig >= 0).all() and (eig < 1e-3 * entropy(p_prev)).all()


def test_eig_and_gap_add_up_to_the_mean_kl():
    g = torch.Generator().manual_seed(2)
    p_prev = torch.rand(7, 10, generator=g).softmax(-1)
    p_next = (3 * torch.randn(12, 7, 10, generator=g)).softmax(-1)
    for estimator in ESTIMATORS:
        eig, gap = eig_from_samples(p_prev, p_next, estimator=estimator)
        assert (eig > 0).all()
        assert (gap > 0).all() or estimator == "jackknife"  # its gap can fall below 0
        torch.testing.assert_close(eig + gap, mean_kl(p_prev, p_next), atol=1e-6, rtol=0)


def test_temperature_scaling_undoes_over_confidence():
    g = torch.Generator().manual_seed(4)
    z = 2 * torch.randn(20_000, 10, generator=g)  # calibrated logits: labels drawn from softmax(z)
    y = torch.multinomial(z.softmax(-1), 1, generator=g)[:, 0]
    tau = fit_temperature(3 * z, y)  # three times too confident
    assert abs(tau - 3) < 0.15, tau
    assert abs(fit_temperature(z, y) - 1) < 0.05
    before = calibration((3 * z).softmax(-1).max(-1).values, (3 * z).argmax(-1) == y)[0]
    after = calibration((3 * z / tau).softmax(-1).max(-1).values, (3 * z).argmax(-1) == y)[0]
    assert after < 0.02 < before


def test_linear_probe_recovers_the_classes_a_state_separates():
    g = torch.Generator().manual_seed(5)
    means = 3 * torch.randn(4, 6, generator=g)  # 4 classes, linearly separable in D = 6
    y = torch.randint(0, 4, (2_000,), generator=g)
    h = means[y] + torch.randn(2_000, 6, generator=g)
    W, b = fit_probe(h, y, num_classes=4)
    assert W.shape == (4, 6) and b.shape == (4,)
    # The Bayes classifier of these Gaussians is linear: the probe matches its accuracy.
    bayes = (-(h[:, None] - means).pow(2).sum(-1)).argmax(1)
    probe = (h @ W.T + b).argmax(1)
    assert (probe == y).float().mean() > (bayes == y).float().mean() - 0.01
    torch.testing.assert_close(fit_probe(h, y, num_classes=4)[0], W)  # deterministic
    # Labels that the state does not carry: the probe stays near the class frequencies.
    noise = torch.randn(2_000, 6, generator=g)
    W, b = fit_probe(noise, y, num_classes=4)
    assert ((noise @ W.T + b).softmax(-1).max(-1).values < 0.5).all()


def test_distilled_probes_agree_with_the_next_glimpse_s_probe_on_average():
    """--probe_fit distilled fits the probe of glimpse t to the beliefs of glimpse t+1's probe
    on the next state: at its optimum their difference averages to 0 also weighted by every
    feature of h_t (up to the weight decay), where probes fitted to the labels each on its own
    disagree; the last probe is the same, and the earlier one as accurate."""
    from types import SimpleNamespace

    from explain import States, glimpse_probes

    g = torch.Generator().manual_seed(7)
    N, D, C = 4_000, 6, 4
    y = torch.randint(0, C, (N,), generator=g)
    h2 = 2 * torch.randn(C, D, generator=g)[y] + torch.randn(N, D, generator=g)
    h1 = (0.5 * h2 + torch.randn(N, D, generator=g)).pow(2)  # a noisier, nonlinear view before it
    model = SimpleNamespace(classifier=SimpleNamespace(fc=SimpleNamespace(out_features=C)))
    states, moment, accuracy = States(torch.stack([h1, h2], 1), None, y), {}, {}
    probes = {fit: glimpse_probes(model, states, torch.device("cpu"), images=N, fit=fit)
              for fit in ("labels", "distilled")}
    for fit, fitted in probes.items():
        q1, p2 = probe_logits(fitted, 0, h1).softmax(-1), probe_logits(fitted, 1, h2).softmax(-1)
        moment[fit] = (((q1 - p2).T @ h1) / N + 2e-4 * fitted[0][0]).abs().max()  # 2 * weight_decay * W
        accuracy[fit] = (q1.argmax(-1) == y).float().mean()
        assert (q1 - p2).mean(0).abs().max() < 1e-4  # both: right on average over all states
    assert moment["distilled"] < 1e-4 and moment["labels"] > 1e-3, moment
    torch.testing.assert_close(probes["distilled"][1], probes["labels"][1])
    assert abs(accuracy["distilled"] - accuracy["labels"]) < 0.01, accuracy


def test_calibration_error_of_calibrated_and_over_confident_beliefs():
    g = torch.Generator().manual_seed(3)
    confidence = torch.rand(200_000, generator=g) * 0.9 + 0.1
    calibrated = torch.rand(200_000, generator=g) < confidence  # right with probability = confidence
    ece, conf, acc, count = calibration(confidence, calibrated)
    assert ece < 0.01 and sum(count) == 200_000 and len(conf) == len(acc) == 15
    over = torch.rand(200_000, generator=g) < confidence - 0.3  # 30 points less often right
    assert abs(calibration(confidence, over)[0] - 0.3) < 0.05
    # By hand: two bins.
    ece, _, acc, count = calibration(torch.tensor([0.95, 0.95, 0.55, 1.0]), torch.tensor([1, 0, 1, 1]), bins=2)
    assert count == [0, 4] and abs(ece - abs(0.75 - 0.8625)) < 1e-6


def test_glimpse_batch_puts_h_t_of_image_b_next_to_image_b():
    B, T = 3, 4
    h = torch.arange(B * T, dtype=torch.float32).view(B, T, 1).expand(B, T, D)  # h[b, t] = b*T + t
    clean = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 1, 28, 28)
    canvas = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 1, 60, 60)
    hf, cf, vf = glimpse_batch(h, clean, canvas)
    assert hf.shape == (B * T, D) and cf.shape == (B * T, 1, 28, 28) and vf.shape == (B * T, 1, 60, 60)
    assert hf[:, 0].tolist() == list(range(B * T))
    assert cf[:, 0, 0, 0].tolist() == [b for b in range(B) for _ in range(T)]
    assert vf[:, 0, 5, 5].tolist() == cf[:, 0, 0, 0].tolist()
    assert glimpse_batch(h, clean)[2] is None


# ----------------------------------------------------------------------------- the frozen RAM, EIG

@pytest.mark.parametrize("core_net_type", ["rnn", "lstm"])
@pytest.mark.parametrize("B", [1, 5])
def test_expected_information_gain_runs_and_is_finite_and_non_negative(core_net_type, B):
    model, vae = tiny_ram(seed=0, core_net_type=core_net_type), tiny_vae()
    x = torch.rand(B, 1, 28, 28)
    out = hidden_states(model, x, 4)
    assert (out.c is None) == (core_net_type == "rnn")
    eig, gap = expected_information_gain(model, vae, out, x, samples=8)[:2]
    assert eig.shape == gap.shape == (B, 4)
    assert torch.isfinite(eig).all() and torch.isfinite(gap).all()
    assert (eig >= 0).all() and (gap >= 0).all() and eig.sum() > 0


def test_eig_is_exactly_zero_when_the_classifier_ignores_its_input():
    model, vae = tiny_ram(seed=0), tiny_vae()
    with torch.no_grad():
        model.classifier.fc.weight.zero_()
        model.classifier.fc.bias.zero_()
    x = torch.rand(3, 1, 28, 28)
    out = hidden_states(model, x, 3)
    eig, gap = expected_information_gain(model, vae, out, x, samples=6)[:2]
    assert eig.abs().max() < 1e-6 and gap.abs().max() < 1e-6


@pytest.mark.parametrize("core_net_type", ["rnn", "lstm"])
@pytest.mark.parametrize("canvas_shape, clean_shape", [((1, 40, 40), (1, 28, 28)), ((3, 30, 50), (3, 30, 50))],
                         ids=["grey-with-canvas-head", "rgb-30x50"])
@pytest.mark.parametrize("drawn", [False, True], ids=["mean-image", "bernoulli-prior-scale2"])
def test_expected_information_gain_equals_a_slow_loop(core_net_type, canvas_shape, clean_shape, drawn):
    """Per glimpse, per sample, per image: imagine, glimpse, classify (and probe), KL; then mean
    over s. The default imagination (mean images, z ~ N(0, I) first) and the report's
    (Bernoulli draws, the first canvas from a prior of real canvases, a wider posterior). The
    LSTM's VAE imagines from h and c."""
    model = tiny_ram(seed=0, core_net_type=core_net_type, in_channels=canvas_shape[0])
    vae = tiny_vae(canvas_shape, clean_shape=clean_shape, state="hc" if core_net_type == "lstm" else "h")
    with torch.no_grad():  # sharper beliefs and more varied canvases: an EIG well above rounding
        model.classifier.fc.weight.mul_(30)
        for p in vae.parameters():
            p.mul_(3)
    B, T, S = 3, 3, 4
    x = torch.rand(B, *canvas_shape)
    prior = torch.rand(5, *canvas_shape)
    imagination = Imagination(bernoulli=True, scale=2.0, prior=prior) if drawn else Imagination()
    probes = [(3 * torch.randn(C, D, generator=torch.Generator().manual_seed(t)), torch.randn(C)) for t in range(T)]
    out = hidden_states(model, x, T)
    fast = expected_information_gain(model, vae, out, x, samples=S, generator=torch.Generator().manual_seed(7),
                                     imagination=imagination, probes=probes)
    g = torch.Generator().manual_seed(7)
    slow = {key: torch.zeros(B, T) for key in ("eig", "gap", "glimpse_nll", "probe_eig", "probe_gap")}

    def eig_gap(ps, p_prev):  # the jackknife estimator, one left-out sample at a time
        def H(p):
            return -(p * p.log()).sum()
        p_bar = torch.stack(ps).mean(0)
        left_out = [H(torch.stack(ps[:i] + ps[i + 1:]).mean(0)) for i in range(S)]
        h_bar = S * H(p_bar) - (S - 1) * torch.stack(left_out).mean()
        eig = h_bar - torch.stack([H(p) for p in ps]).mean()
        return eig, -h_bar - (p_bar * p_prev.log()).sum()

    with torch.no_grad():
        for t in range(T):
            eps = torch.randn(S, B, Z, generator=g)
            if t == 0 and drawn:
                means = prior[torch.randint(0, 5, (S * B,), generator=g)].view(S, B, *canvas_shape)
                canvases = means
            else:
                means = torch.zeros(S, B, *canvas_shape)
                for b in range(B):
                    if t == 0:
                        mu, std = torch.zeros(Z), torch.ones(Z)
                    else:
                        known = out.h[b, t - 1] if out.c is None else torch.cat([out.h[b, t - 1], out.c[b, t - 1]])
                        mu, logvar = vae.encode(known)
                        std = (0.5 * logvar).exp() * (2.0 if drawn else 1.0)
                    for s in range(S):
                        means[s, b] = torch.sigmoid(vae.decode_canvas(mu + std * eps[s, b]))
                canvases = torch.bernoulli(means, generator=g) if drawn else means
            for b in range(B):
                if t == 0:
                    p_prev = q_prev = torch.full((C,), 1.0 / C)
                    state = model.core.init_state(1, x.device, x.dtype)
                else:
                    p_prev = out.logits[b, t - 1].softmax(-1)
                    W, bias = probes[t - 1]
                    q_prev = (W @ out.h[b, t - 1] + bias).softmax(-1)
                    state = tuple(s[b:b + 1, t - 1] for s in (out.h, out.c) if s is not None)
                ps, qs, log_liks = [], [], []
                real = model.retina.extract(x[b:b + 1], out.l[b:b + 1, t]).flatten()
                for s in range(S):
                    h = model.step(canvases[s, b][None], out.l[b:b + 1, t], state)[0]
                    ps.append(model.classifier(h)[0].softmax(-1))
                    W, bias = probes[t]
                    qs.append((W @ h[0] + bias).softmax(-1))
                    m = model.retina.extract(means[s, b][None], out.l[b:b + 1, t]).flatten().clamp(1e-4, 1 - 1e-4)
                    log_liks.append((real * m.log() + (1 - real) * (1 - m).log()).sum())
                slow["eig"][b, t], slow["gap"][b, t] = eig_gap(ps, p_prev)
                slow["probe_eig"][b, t], slow["probe_gap"][b, t] = eig_gap(qs, q_prev)
                slow["glimpse_nll"][b, t] = -(torch.stack(log_liks).logsumexp(0) - math.log(S))
    for key, value in slow.items():
        torch.testing.assert_close(getattr(fast, key), value, atol=1e-5, rtol=1e-4, msg=key)
    assert fast.eig.mean() > 2e-4 and fast.probe_eig.mean() > 2e-4, fast  # 20x the tolerance


@pytest.mark.parametrize("drawn", [False, True], ids=["mean-image", "bernoulli-prior-scale2"])
def test_the_spread_check_is_the_glimpse_nll_of_the_eig_estimator(drawn):
    """Without running the RAM on the imagined canvases, the same random numbers in the same order."""
    model, vae = tiny_ram(seed=0, core_net_type="lstm"), tiny_vae(state="hc")
    x = torch.rand(3, 1, 28, 28)
    imagination = Imagination(bernoulli=True, scale=2.0, prior=torch.rand(5, 1, 28, 28)) if drawn else Imagination()
    out = hidden_states(model, x, 3)
    expected = expected_information_gain(model, vae, out, x, samples=4, imagination=imagination,
                                         generator=torch.Generator().manual_seed(3))
    check = spread_check(model, vae, out, x, samples=4, imagination=imagination,
                         generator=torch.Generator().manual_seed(3))
    assert check.shape == (3, 3)
    torch.testing.assert_close(check, expected.glimpse_nll, atol=0, rtol=0)


def test_imagination_draws_pixels_widens_the_posterior_and_starts_from_the_prior():
    vae = tiny_vae((1, 8, 8), clean_shape=(1, 8, 8))
    h = torch.randn(2, D)
    g = torch.Generator().manual_seed(0)
    drawn, means, weights = imagine(vae, h, samples=4000, batch=2, imagination=Imagination(bernoulli=True), generator=g)
    assert weights is None and set(drawn.unique().tolist()) <= {0.0, 1.0} and means.shape == drawn.shape == (4000, 2, 1, 8, 8)
    torch.testing.assert_close(drawn.mean(0), means.mean(0), atol=0.04, rtol=0)  # draws of the means
    mean_image, same, _ = imagine(vae, h, samples=3, batch=2, generator=g)
    assert mean_image is same and not set(mean_image.unique().tolist()) <= {0.0, 1.0}
    # the spread of the decoded means grows with the posterior's width
    spread = [imagine(vae, h, samples=2000, batch=2, imagination=Imagination(scale=k),
                      generator=torch.Generator().manual_seed(1))[1].std(0).mean() for k in (1.0, 3.0)]
    assert spread[1] > 1.5 * spread[0]
    # before the first glimpse, with a prior: real canvases, unchanged whatever the draw
    prior = torch.rand(6, 1, 8, 8)
    first, first_means, _ = imagine(vae, None, samples=5, batch=2, generator=g,
                                 imagination=Imagination(bernoulli=True, prior=prior))
    assert first is first_means
    assert all(any(torch.equal(c, p) for p in prior) for c in first.flatten(0, 1))


def test_the_bank_gives_the_nearest_canvases_in_order():
    canvases = torch.arange(5.0)[:, None, None, None].expand(5, 1, 4, 4)  # canvas i is filled with i
    dataset = TensorDataset(canvases, canvases, torch.arange(5))
    keys = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])  # (N, K = 1), after 1 glimpse
    bank = Bank(dataset=dataset, keys=(keys, keys + 100))
    near, weights = bank.nearest(torch.tensor([[2.2], [9.0]]), 1, 3)  # (S, B, 1, 4, 4), None
    assert near.shape == (3, 2, 1, 4, 4) and weights is None
    assert near[:, 0, 0, 0, 0].tolist() == [2.0, 3.0, 1.0] and near[:, 1, 0, 0, 0].tolist() == [4.0, 3.0, 2.0]
    assert bank.nearest(torch.tensor([[102.0]]), 2, 1)[0][0, 0, 0, 0, 0] == 2.0  # keys after 2 glimpses
    assert bank.nearest(torch.tensor([[0.0]]), 1, 7)[0][:, 0, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 0, 1]
    vae = tiny_vae((1, 4, 4), clean_shape=(1, 4, 4))
    canvas, same, weights = imagine(vae, torch.tensor([[2.2]]), samples=2, batch=1,
                                    imagination=Imagination(bank=bank), t=1)
    assert canvas is same and weights is None and canvas[:, 0, 0, 0, 0].tolist() == [2.0, 3.0]
    for t in (None, 0, 3):
        with pytest.raises(ValueError, match="after 1..2 glimpses"):
            imagine(vae, torch.tensor([[2.2]]), samples=2, batch=1, imagination=Imagination(bank=bank), t=t)


def test_belief_weights_mix_the_neighbours_beliefs_to_the_images():
    # one-hot neighbours: the weighted mix of their classes is the image's belief, exactly
    q = torch.eye(3)[torch.tensor([[0, 0, 1, 2], [1, 1, 1, 2]])]  # (B = 2, S = 4, C = 3)
    belief = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    w = belief_weights(belief, q)  # (S, B)
    torch.testing.assert_close(w.sum(0), torch.ones(2))
    # a class no neighbour believes cannot be made up: the second image's 0.6 on class 0 is lost
    torch.testing.assert_close((w.T[..., None] * q).sum(1)[0], belief[0])
    torch.testing.assert_close((w.T[..., None] * q).sum(1)[1], torch.tensor([0.0, 0.75, 0.25]))
    # neighbours that already believe what the image does keep equal weights
    soft = torch.softmax(torch.randn(2, 1, 3), -1).expand(2, 5, 3)
    torch.testing.assert_close(belief_weights(soft[:, 0], soft), torch.full((5, 2), 0.2))


def test_tilted_weights_match_any_mix_and_stay_as_even_as_matching_allows():
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(2 * torch.randn(4, 16, 10, generator=g), -1)  # (B, S, C): soft neighbours
    inside = torch.softmax(torch.randn(4, 16, generator=g), -1)  # a mix of the neighbours' beliefs
    belief = (inside[..., None] * q).sum(1)  # (B, C), inside their hull
    w = tilted_weights(belief, q, ridge=1e-6, steps=60)  # (S, B)
    torch.testing.assert_close(w.sum(0), torch.ones(4))
    torch.testing.assert_close((w.T[..., None] * q).sum(1), belief, atol=1e-4, rtol=0)
    # belief_weights are exact only for one-hot neighbours: on these they miss the mix
    assert ((belief_weights(belief, q).T[..., None] * q).sum(1) - belief).abs().max() > 1e-2
    # nearest to equal: log w_s is affine in q_s, so no other matching weights are more even;
    # an equal-weight mix keeps equal weights
    torch.testing.assert_close(tilted_weights(q.mean(1), q), torch.full((16, 4), 1 / 16))
    entropy_w = -(w * w.log()).sum(0)
    assert (entropy_w >= -(inside.T * inside.T.log()).sum(0) - 1e-5).all()
    # a belief no mix can reach (class 0, which no neighbour believes): finite weights whose
    # mix moves towards it as far as the ridge lets them
    one_hot = torch.eye(3)[torch.tensor([[1, 1, 2, 2]])]  # (1, 4, 3)
    far = torch.tensor([[0.6, 0.3, 0.1]])
    w = tilted_weights(far, one_hot)
    assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-6
    mix = (w.T[..., None] * one_hot).sum(1)[0]
    assert mix[1] > mix[2] and float(mix[0]) == 0.0


def test_a_bank_with_beliefs_weights_its_nearest_canvases_to_the_image_belief():
    canvases = torch.arange(5.0)[:, None, None, None].expand(5, 1, 4, 4)  # canvas i is filled with i
    keys = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    beliefs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    bank = Bank(dataset=TensorDataset(canvases, canvases, torch.arange(5)), keys=(keys,), beliefs=(beliefs,))
    key, belief = torch.tensor([[2.2], [2.2]]), torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    near, weights = bank.nearest(key, 1, 2, belief)  # the nearest are 2 (class 0) and 3 (class 1)
    assert near[:, :, 0, 0, 0].tolist() == [[2.0, 2.0], [3.0, 3.0]]
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.5], [0.75, 0.5]]))
    plain, none = bank.nearest(key, 1, 2)  # no belief: the same canvases, counted alike
    assert none is None and torch.equal(plain, near)
    tilted = dataclasses.replace(bank, weighting="tilted")
    torch.testing.assert_close(tilted.nearest(key, 1, 2, belief)[1],
                               tilted_weights(belief, torch.stack([beliefs[[2, 3]]] * 2)))
    # beliefs are read by the probe of glimpse t when the bank has probes, else by the classifier
    h = torch.randn(3, 4)
    probes = [(torch.randn(2, 4), torch.randn(2)), (torch.randn(2, 4), torch.randn(2))]
    classifier = torch.nn.Linear(4, 2)
    probed = Bank(dataset=bank.dataset, keys=(keys,), beliefs=(beliefs,), probes=probes)
    torch.testing.assert_close(probed.belief(classifier, h, 2), probe_logits(probes, 1, h).softmax(-1))
    torch.testing.assert_close(bank.belief(classifier, h, 2), classifier(h).softmax(-1))


def test_weighted_eig_is_the_weighted_mutual_information_and_equal_weights_change_nothing():
    g = torch.Generator().manual_seed(0)
    p_prev = torch.softmax(torch.randn(3, 5, generator=g), -1)
    p_next = torch.softmax(2 * torch.randn(8, 3, 5, generator=g), -1)  # (S, B, C)
    w = torch.softmax(torch.randn(8, 3, generator=g), 0)  # (S, B)
    for estimator in ("plugin", "jackknife"):
        eig, gap = eig_from_samples(p_prev, p_next, estimator=estimator, weights=w)
        torch.testing.assert_close(eig + gap, (w * kl_categorical(p_next, p_prev)).sum(0), atol=1e-6, rtol=0)
        assert (eig >= 0).all()
        even = eig_from_samples(p_prev, p_next, estimator=estimator, weights=torch.full((8, 3), 1 / 8))
        for a, b in zip(even, eig_from_samples(p_prev, p_next, estimator=estimator)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    p_bar = (w[..., None] * p_next).sum(0)
    plugin = eig_from_samples(p_prev, p_next, estimator="plugin", weights=w)[0]
    torch.testing.assert_close(plugin, entropy(p_bar) - (w * entropy(p_next)).sum(0), atol=1e-6, rtol=0)
    # a sample of weight 0 changes nothing
    padded = eig_from_samples(p_prev, torch.cat([p_next, p_next[:1].flip(-1)]), estimator="plugin",
                              weights=torch.cat([w, torch.zeros(1, 3)]))
    torch.testing.assert_close(padded[0], plugin, atol=1e-6, rtol=0)


def test_the_weighted_jackknife_removes_the_bias_when_the_weights_differ():
    """The setting of the unweighted jackknife test, with weights softmax(z / 2) drawn apart from
    the beliefs (effective sample size about 6.6 of S = 8): the true gap is still 0. The
    plugin puts about 0.32 nats into it; the weighted jackknife before 2026-12-02 (n H(p_bar) -
    (n - 1) sum_i w_i H(p_bar without i)) left 0.10; today's leaves under 0.04, about what
    the equal-weight jackknife leaves at S = 6. A sample of weight 0 changes nothing."""
    g = torch.Generator().manual_seed(5)
    C, S, B = 10, 8, 20_000
    true_eig = math.log(C) - entropy((3 * torch.randn(10**6, C, generator=g)).softmax(-1)).mean()
    p_next = (3 * torch.randn(S, B, C, generator=g)).softmax(-1)
    p_prev = torch.full((B, C), 1 / C)
    w = (0.5 * torch.randn(S, B, generator=g)).softmax(0)
    assert 6 < (1 / (w ** 2).sum(0)).mean() < 7
    eig, gap = eig_from_samples(p_prev, p_next, estimator="plugin", weights=w)
    assert gap.mean() > 0.25
    eig, gap = eig_from_samples(p_prev, p_next, estimator="jackknife", weights=w)
    assert abs(gap.mean()) < 0.04 and abs(eig.mean() - true_eig) < 0.04 and (eig >= 0).all()
    padded = eig_from_samples(p_prev, torch.cat([p_next, p_next[:1].flip(-1)]),
                              weights=torch.cat([w, torch.zeros(1, B)]))
    for a, b in zip(padded, (eig, gap)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # all the weight on one sample: its belief, no information and no correction
    one = torch.zeros(S, B)
    one[3] = 1
    eig, gap = eig_from_samples(p_prev, p_next, weights=one)
    assert (eig < 1e-6).all()
    torch.testing.assert_close(gap, kl_categorical(p_next[3], p_prev), atol=1e-6, rtol=0)


@pytest.mark.parametrize("core,state", [("rnn", "h"), ("lstm", "hc")])
def test_eig_from_a_bank_of_the_images_themselves_is_their_own_next_belief(core, state):
    """Each image is its own nearest neighbour, so with S = 1 the imagined glimpse is the real
    one: EIG 0 and gap KL(p_t || p_{t-1}), up to rounding."""
    model, vae = tiny_ram(seed=0, core_net_type=core).eval(), tiny_vae(state=state)
    x = torch.rand(6, 1, 28, 28)
    out = hidden_states(model, x, 3)
    keys = tuple(vae.state_input(out.h[:, t], None if out.c is None else out.c[:, t]) for t in range(2))
    bank = Bank(dataset=TensorDataset(x, x, torch.zeros(6)), keys=keys)
    expected = expected_information_gain(model, vae, out, x, samples=1,
                                         imagination=Imagination(prior=x[:1], bank=bank))
    p = out.logits.softmax(-1)
    assert expected.eig.abs().max() < 1e-6
    torch.testing.assert_close(expected.gap[:, 1:], kl_categorical(p[:, 1:], p[:, :-1]), atol=1e-5, rtol=1e-4)


def test_the_glimpse_nll_prefers_an_imagination_that_contains_what_was_seen():
    model = tiny_ram(seed=0).eval()
    x = torch.rand(3, 1, 28, 28).round()
    l = torch.zeros(3, 2)
    other = torch.rand(4, 3, 1, 28, 28)
    containing = torch.cat([other[:3], x[None]])  # one of the 4 imagined canvases is the real one
    assert (glimpse_nll(model, x, containing, l) < glimpse_nll(model, x, other, l)).all()
    # S copies of one canvas score as that canvas alone
    torch.testing.assert_close(glimpse_nll(model, x, other[:1].expand(4, -1, -1, -1, -1), l),
                               glimpse_nll(model, x, other[:1], l))


def test_expected_information_gain_rejects_a_canvas_of_the_wrong_size():
    model, vae = tiny_ram(seed=0), tiny_vae((1, 40, 40))
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="canvases"):
        expected_information_gain(model, vae, hidden_states(model, x, 2), x, samples=2)
    # H and W are not interchangeable: a (3, 50, 30) input is not the VAE's (3, 30, 50) canvas.
    model, vae = tiny_ram(seed=0, in_channels=3), tiny_vae((3, 30, 50), clean_shape=(3, 30, 50))
    x = torch.rand(2, 3, 50, 30)
    with pytest.raises(ValueError, match=r"\(3, 30, 50\) but the RAM sees \(3, 50, 30\)"):
        expected_information_gain(model, vae, hidden_states(model, x, 2), x, samples=2)


def test_hidden_states_are_the_rollout_without_gradients():
    model = tiny_ram(seed=0)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(3)
    out = hidden_states(model, x, 3)
    torch.manual_seed(3)
    ref = model.rollout(x, 3)
    assert not out.h.requires_grad and not model.training
    torch.testing.assert_close(out.h, ref.h.detach(), rtol=0, atol=0)


# ----------------------------------------------------------------------------- training, checkpoints

class FakeWriter:
    def __init__(self):
        self.scalars = {}

    def add_scalar(self, tag, value, step):
        self.scalars[(tag, step)] = value


def fake_loaders(canvas_size=28, n=64, batch_size=8):
    clean, y = bar_images(n)
    if canvas_size == 28:
        x = clean
    else:  # the digit in the top-left corner of a larger canvas, plus a clutter square
        x = torch.zeros(n, 1, canvas_size, canvas_size)
        x[..., :28, :28] = clean
        x[..., -6:-2, -6:-2] = 1.0
    train = TensorDataset(x, clean, y)
    valid = TensorDataset(x[:16], clean[:16], y[:16])
    return {"train": DataLoader(train, batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(0)),
            "valid": DataLoader(valid, batch_size=batch_size)}


@pytest.mark.parametrize("canvas_size", [28, 40])
def test_train_vae_freezes_the_ram_and_lowers_the_loss(canvas_size):
    model, vae = tiny_ram(seed=0), tiny_vae((1, canvas_size, canvas_size))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    writer, seen = FakeWriter(), []
    T = 3
    history = train_vae(vae, model, fake_loaders(canvas_size), num_glimpses=T, epochs=2, lr=1e-2, beta=1.0,
                        device=torch.device("cpu"), writer=writer,
                        on_epoch_end=lambda epoch, metrics: seen.append(epoch))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert seen == [1, 2] and [m["epoch"] for m in history] == [1, 2]
    first, second = history[0]["train"], history[1]["train"]
    assert second["loss"] < 0.9 * first["loss"], (first, second)
    assert (first["bce_canvas"] > 0) == (canvas_size != 28)
    valid = history[1]["valid"]
    assert valid["count"] == 16 and len(valid["mse_t"]) == len(valid["bce_t"]) == T
    for tag in ("vae/train_loss", "vae/train_bce_clean", "vae/train_kl", "vae/val_loss", "vae/val_mse/glimpse_3"):
        assert (tag, 1) in writer.scalars and (tag, 2) in writer.scalars, tag
    assert writer.scalars[("vae/train_loss", 2)] == second["loss"]


def test_train_vae_resumes_after_start_epoch():
    model, vae = tiny_ram(seed=0), tiny_vae()
    history = train_vae(vae, model, {"train": fake_loaders()["train"]}, num_glimpses=2, epochs=3, lr=1e-3,
                        beta=1.0, device=torch.device("cpu"), start_epoch=2)
    assert [m["epoch"] for m in history] == [3] and "valid" not in history[0]


def test_save_and_load_vae_round_trip(tmp_path):
    vae = tiny_vae((1, 40, 40))
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    out = vae(torch.randn(4, D))
    out.clean_logits.sum().backward()
    opt.step()
    path = tmp_path / "vae" / "vae.pt"
    save_vae(str(path), vae, opt, 5, {"num_glimpses": 6, "vae_beta": 1.0, "run_name": "r"})
    loaded, state = load_vae(str(path), torch.device("cpu"),
                             expected={**vae.settings, "num_glimpses": 6, "vae_beta": 1.0})
    assert state["epoch"] == 5 and loaded.settings == vae.settings
    for (k, a), (_, b) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1
    h = torch.randn(2, D)
    torch.testing.assert_close(loaded.encode(h), vae.encode(h), rtol=0, atol=0)


def test_load_vae_errors_are_config_errors(tmp_path):
    cpu = torch.device("cpu")
    vae = tiny_vae()
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_vae(str(tmp_path / "missing.pt"), cpu, expected={})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="corrupt"):
        load_vae(str(corrupt), cpu, expected={})
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, str(other))
    with pytest.raises(ConfigError, match="not a VAE checkpoint"):
        load_vae(str(other), cpu, expected={})
    path = tmp_path / "vae.pt"
    save_vae(str(path), vae, None, 1, {"num_glimpses": 6})
    with pytest.raises(ConfigError, match=r"latent_size=4 in the checkpoint but 32 here") as err:
        load_vae(str(path), cpu, expected={**vae.settings, "latent_size": 32})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="num_glimpses=6 in the checkpoint but 8 here"):
        load_vae(str(path), cpu, expected={"num_glimpses": 8})


# ----------------------------------------------------------------------------- settings before image folders

LEGACY = {"hidden_size": D, "latent_size": Z, "vae_hidden": 32, "clean_size": 28, "canvas_size": 60,
          "canvas_channels": 1}


def test_legacy_settings_build_the_same_vae_as_shapes():
    old = HiddenStateVAE.from_settings(LEGACY)
    new = tiny_vae((1, 60, 60), seed=2)
    assert normalise_settings(LEGACY) == {"hidden_size": D, "latent_size": Z, "vae_hidden": 32,
                                          "clean_shape": (1, 28, 28), "canvas_shape": (1, 60, 60),
                                          "decoder": "mlp", "state": "h"}
    # A square run keeps writing the settings it wrote before image folders.
    assert old.settings == new.settings == LEGACY
    assert old.clean_shape == new.clean_shape == (1, 28, 28) and old.canvas_shape == new.canvas_shape == (1, 60, 60)
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}
    old.load_state_dict(new.state_dict())
    z = torch.randn(3, Z)
    torch.testing.assert_close(old.decode_canvas(z), new.decode_canvas(z), rtol=0, atol=0)
    torch.testing.assert_close(old.decode_clean(z), new.decode_clean(z), rtol=0, atol=0)


def test_a_checkpoint_of_legacy_settings_loads_and_matches_in_either_form(tmp_path):
    """A file written by the code before image folders (settings as square sizes) matches a VAE
    built today from shapes, whichever form `expected` is in, and a real difference is named."""
    vae = tiny_vae((1, 60, 60))
    path = str(tmp_path / "vae.pt")
    atomic_save({"format": VAE_FORMAT, "settings": dict(LEGACY), "config": {"vae_beta": 1.0}, "epoch": 3,
                 "vae": vae.state_dict(), "optimizer": None, "rng": None}, path)
    for expected in (vae.settings, normalise_settings(vae.settings)):
        loaded, state = load_vae(path, torch.device("cpu"), expected={**expected, "vae_beta": 1.0})
        assert state["epoch"] == 3 and loaded.settings == LEGACY
        torch.testing.assert_close(loaded.encode(torch.ones(1, D)), vae.encode(torch.ones(1, D)), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"canvas_shape=\(1, 60, 60\) in the checkpoint but \(1, 40, 40\) here"):
        load_vae(path, torch.device("cpu"), expected=tiny_vae((1, 40, 40)).settings)


def test_save_and_load_an_rgb_non_square_vae(tmp_path):
    vae = tiny_vae(RGB, clean_shape=RGB)
    path = str(tmp_path / "vae.pt")
    save_vae(path, vae, None, 2, {"vae_beta": 1.0})
    loaded, _ = load_vae(path, torch.device("cpu"), expected={**vae.settings, "vae_beta": 1.0})
    assert loaded.settings == vae.settings and loaded.clean_shape == RGB and not loaded.separate_canvas
    with pytest.raises(ConfigError, match=r"canvas_shape=\(3, 48, 64\) in the checkpoint but \(3, 64, 48\)"):
        load_vae(path, torch.device("cpu"), expected=tiny_vae((3, 64, 48), clean_shape=(3, 64, 48)).settings)


SHIPPED_VAES = sorted(d for d in os.listdir(os.path.join(ROOT, "models"))
                      if os.path.isfile(os.path.join(ROOT, "models", d, "vae.pt")))


@pytest.mark.parametrize("run", SHIPPED_VAES)
def test_shipped_vaes_load_and_match_a_vae_built_today(run):
    """models/<run>/vae.pt (settings as square sizes) against a VAE built from shapes as the
    explanation builds it: same settings, same ram_epoch and beta, weights that fit."""
    with open(os.path.join(ROOT, "models", run, "config.json")) as f:
        config = json.load(f)
    side = DATASETS[config.get("data_type", "mnist")]["image_size"]
    fresh = HiddenStateVAE(hidden_size=config["hidden_size"], latent_size=config.get("latent_size", 32),
                           vae_hidden=config.get("vae_hidden", 512), canvas_shape=(1, side, side),
                           state="hc" if config.get("core_net_type") == "lstm" else "h")
    saved = torch.load(os.path.join(ROOT, "models", run, "vae.pt"), map_location="cpu", weights_only=True)
    expected = {**fresh.settings, "ram_epoch": saved["config"]["ram_epoch"], "vae_beta": 1.0}
    vae, _ = load_vae(os.path.join(ROOT, "models", run, "vae.pt"), torch.device("cpu"), expected=expected)
    assert vae.settings == fresh.settings and vae.canvas_shape == (1, side, side)
