"""Translated / cluttered generation, its cache, and the loaders, on small synthetic digits.

The vectorised generator is checked against a slow per-image loop that replays its recorded
layout; the rest checks the numbers a user relies on: the digit sits exactly at its recorded
position, k pieces of c x c, clutter only from other digits of the same split, seeds, cache.
"""

import os

import numpy as np
import pytest
import torch

import data_loader
from arguments import DATASETS, ConfigError, get_config
from data_loader import (SPLITS, build_sets, cache_path, generate, generated_splits, generation_params, get_data,
                         read_cache, source_digest, split_rng)

GENERATED = [name for name in DATASETS if name != "mnist"]


def random_digits(n, seed=0):
    """Digits (n, 28, 28) uint8 with many bright pixels, so that overlaps clip at 255."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 28, 28)) * (rng.random((n, 28, 28)) < 0.6)).astype(np.uint8)


def fake_mnist(sizes=(40, 12, 10), values=None):
    """{split: (digits, labels)} like load_mnist; with values, every digit of a split is that constant."""
    out = {}
    for i, (split, n) in enumerate(zip(SPLITS, sizes)):
        digits = random_digits(n, seed=i) if values is None else np.full((n, 28, 28), values[i], np.uint8)
        out[split] = (digits, np.arange(n, dtype=np.int64) % 10)
    return out


@pytest.fixture
def fake_loader(monkeypatch):
    """Replace the MNIST loader by fake splits; returns a setter for other contents."""
    state = {"mnist": fake_mnist()}
    monkeypatch.setattr(data_loader, "load_mnist", lambda config: state["mnist"])

    def set_mnist(mnist):
        state["mnist"] = mnist

    return set_mnist


def config_for(tmp_path, *args):
    return get_config([f"--data_dir={tmp_path}/data", "--batch_size=8", *args])


def slow_canvas(digits, g, canvas_size, side):
    """Per-image reference: int64 sum of the digit and each recorded side x side piece, then clip."""
    N, k = g.clutter_source.shape
    out = np.zeros((N, 1, canvas_size, canvas_size), np.int64)
    for n in range(N):
        r, c = g.position[n]
        out[n, 0, r:r + 28, c:c + 28] += digits[n]
        for j in range(k):
            (cr, cc), (pr, pc) = g.clutter_crop[n, j], g.clutter_position[n, j]
            out[n, 0, pr:pr + side, pc:pc + side] += digits[g.clutter_source[n, j], cr:cr + side, cc:cc + side]
    return np.minimum(out, 255).astype(np.uint8)


def make(digits, name, seed=0, split="train", **kw):
    return data_loader.generate_for(name, digits, split_rng(split, seed), **kw)


# ------------------------------------------------------------------------------ generate

@pytest.mark.parametrize("name", GENERATED)
def test_shapes_dtypes_and_ranges(name):
    S, k, c = (DATASETS[name][key] for key in ("image_size", "num_clutter", "clutter_size"))
    g = make(random_digits(50), name)
    assert g.canvas.shape == (50, 1, S, S) and g.canvas.dtype == np.uint8
    assert g.position.shape == (50, 2) and g.position.dtype == np.int64
    assert g.clutter_source.shape == (50, k) and g.clutter_position.shape == g.clutter_crop.shape == (50, k, 2)
    assert g.position.min() >= 0 and g.position.max() <= S - 28
    if k:
        assert g.clutter_crop.min() >= 0 and g.clutter_crop.max() <= 28 - c
        assert g.clutter_position.min() >= 0 and g.clutter_position.max() <= S - c
        assert g.clutter_source.min() >= 0 and g.clutter_source.max() < 50
    assert g.canvas.max() == 255  # overlapping bright pixels saturate instead of wrapping


@pytest.mark.parametrize("name", ["cluttered", "mnist-clut"])
def test_vectorised_equals_slow_per_image_loop(name):
    digits = random_digits(60)
    g = make(digits, name, chunk_size=7)  # several chunks, the last one partial
    spec = DATASETS[name]
    np.testing.assert_array_equal(g.canvas, slow_canvas(digits, g, spec["image_size"], spec["clutter_size"]))


def test_result_does_not_depend_on_chunk_size():
    digits = random_digits(70)
    a, b = make(digits, "cluttered100", chunk_size=8), make(digits, "cluttered100")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_digit_exactly_at_recorded_position_without_clutter():
    digits = random_digits(80)
    g = make(digits, "translated")
    for n in range(80):
        r, c = g.position[n]
        np.testing.assert_array_equal(g.canvas[n, 0, r:r + 28, c:c + 28], digits[n])
        assert g.canvas[n].sum(dtype=np.int64) == digits[n].sum(dtype=np.int64)  # nothing elsewhere


def test_fresh_canvases_are_drawn_per_epoch_from_the_same_digits():
    from data_loader import ImageSet, redraw_canvases

    digits = random_digits(64)
    g = make(digits, "cluttered")

    def canvases(epoch, *flags):
        dataset = ImageSet(g.canvas, digits[:, None], np.zeros(64, np.int64), 10, position=g.position)
        redraw_canvases(dataset, get_config(["--data_type=cluttered", *flags]), epoch)
        return dataset

    cached = torch.as_tensor(g.canvas)
    assert torch.equal(canvases(3).x, cached)  # without the flag: the cached set at every epoch
    fresh = ["--fresh_canvases=True"]
    assert torch.equal(canvases(1, *fresh).x, cached)  # epoch 1: the cached set
    two, again, three = canvases(2, *fresh), canvases(2, *fresh), canvases(3, *fresh)
    other_seed = canvases(2, *fresh, "--data_seed=1")
    assert torch.equal(two.x, again.x) and torch.equal(two.position, again.position)
    for a, b in ((two, three), (two, other_seed)):
        assert not torch.equal(a.x, b.x) and not torch.equal(a.position, b.position)
    assert not torch.equal(two.x, cached)
    for dataset in (two, three):  # each digit lies under its new recorded position
        assert torch.equal(dataset.x_clean, torch.as_tensor(digits[:, None]))
        for n in range(64):
            r, c = dataset.position[n].tolist()
            assert (dataset.x[n, 0, r:r + 28, c:c + 28] >= dataset.x_clean[n, 0]).all()


def slow_affine(digit, angle, factor):
    """affine_digits for one digit, one pixel at a time: the output pixel centre p (normalised,
    y down) reads the input at R(angle) p / factor by bilinear interpolation, zero outside."""
    n = digit.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            x, y = (2 * j + 1) / n - 1, (2 * i + 1) / n - 1
            xs = (np.cos(angle) * x - np.sin(angle) * y) / factor
            ys = (np.sin(angle) * x + np.cos(angle) * y) / factor
            u, v = ((xs + 1) * n - 1) / 2, ((ys + 1) * n - 1) / 2  # input column, row
            c0, r0 = int(np.floor(u)), int(np.floor(v))
            for r, wr in ((r0, r0 + 1 - v), (r0 + 1, v - r0)):
                for c, wc in ((c0, c0 + 1 - u), (c0 + 1, u - c0)):
                    if 0 <= r < n and 0 <= c < n:
                        out[i, j] += wr * wc * float(digit[r, c])
    return np.clip(np.round(out), 0, 255)


def test_affine_digits_equal_a_slow_loop_and_keep_the_identity_exact():
    from data_loader import affine_digits

    digits = random_digits(5, seed=3)
    angle, factor = np.array([0.3, -0.5, 1.0, 0.0, 2.0]), np.array([1.1, 0.85, 1.0, 1.3, 0.9])
    turned = affine_digits(digits, angle, factor, chunk_size=2)
    for n in range(5):  # float32 in torch against float64 here: a rounding may differ by 1
        assert np.abs(turned[n].astype(int) - slow_affine(digits[n], angle[n], factor[n])).max() <= 1
    assert np.array_equal(affine_digits(digits, np.zeros(5), np.ones(5)), digits)
    quarter = affine_digits(digits, np.full(5, np.pi / 2), np.ones(5))  # pixel centres onto pixel centres
    assert np.array_equal(quarter, np.rot90(digits, k=1, axes=(1, 2)))


def test_augmented_fresh_canvases_turn_the_digits_and_keep_the_layout():
    from data_loader import ImageSet, redraw_canvases

    digits = np.zeros((32, 28, 28), np.uint8)
    digits[:, 4:24, 12:16] = 200  # an upright bar: turning it moves pixels off the column
    g = make(digits, "translated")

    def canvases(epoch, *flags):
        dataset = ImageSet(g.canvas, digits[:, None], np.zeros(32, np.int64), 10, position=g.position)
        redraw_canvases(dataset, get_config(["--data_type=translated", "--fresh_canvases=True", *flags]), epoch)
        return dataset

    plain, turned = canvases(2), canvases(2, "--augment_rotation=30", "--augment_scale=0.2")
    assert torch.equal(turned.position, plain.position)  # the same layout: only the digits differ
    assert torch.equal(turned.x_clean, plain.x_clean)  # the clean digits are kept as they are
    assert torch.equal(canvases(1, "--augment_rotation=30").x, torch.as_tensor(g.canvas))  # epoch 1: cached
    again = canvases(2, "--augment_rotation=30", "--augment_scale=0.2")
    assert torch.equal(again.x, turned.x) and not torch.equal(canvases(3, "--augment_rotation=30",
                                                                        "--augment_scale=0.2").x, turned.x)
    changed = 0
    for n in range(32):
        r, c = turned.position[n].tolist()
        box = turned.x[n, 0, r:r + 28, c:c + 28]
        assert turned.x[n].sum() == box.sum()  # the turned digit stays inside its box
        changed += not torch.equal(box, plain.x[n, 0, r:r + 28, c:c + 28])
    assert changed >= 30  # U(-30, 30) degrees and U(0.8, 1.2): a digit left as it was is rare


def test_digit_under_clutter_equal_where_no_piece_overlaps():
    digits = random_digits(80)
    g = make(digits, "cluttered")
    changed = 0
    for n in range(80):
        covered = np.zeros((60, 60), bool)  # footprint of the k pieces
        for pr, pc in g.clutter_position[n]:
            covered[pr:pr + 8, pc:pc + 8] = True
        r, c = g.position[n]
        window, free = g.canvas[n, 0, r:r + 28, c:c + 28], ~covered[r:r + 28, c:c + 28]
        assert (window >= digits[n]).all()
        np.testing.assert_array_equal(window[free], digits[n][free])
        changed += (window != digits[n]).any()
    assert changed > 10  # clutter does land on digits, so the checks above are not vacuous


@pytest.mark.parametrize("name", ["cluttered", "cluttered100", "mnist-clut"])
def test_clutter_is_k_pieces_of_c_by_c(name):
    """Blank digit 0 among all-255 digits: image 0 shows exactly the union of k c x c squares."""
    S, k, c = (DATASETS[name][key] for key in ("image_size", "num_clutter", "clutter_size"))
    digits = np.full((30, 28, 28), 255, np.uint8)
    digits[0] = 0
    areas = []
    for seed in range(40):
        g = make(digits, name, seed=seed)
        union = np.zeros((S, S), bool)
        for pr, pc in g.clutter_position[0]:
            union[pr:pr + c, pc:pc + c] = True
        np.testing.assert_array_equal(g.canvas[0, 0] == 255, union)
        assert set(np.unique(g.canvas[0])) <= {0, 255}
        areas.append(union.sum())
    assert max(areas) == k * c * c  # disjoint pieces: exactly k pieces of c x c
    assert min(areas) >= c * c


def test_clutter_never_comes_from_the_image_itself():
    g = make(random_digits(25), "cluttered100")
    assert (g.clutter_source != np.arange(25)[:, None]).all()
    # Two digits, one blank: the full one's clutter can only be cut from the blank one.
    digits = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    for seed in range(20):
        g = make(digits, "cluttered", seed=seed)
        assert (g.clutter_source == [[1] * 4, [0] * 4]).all()
        assert g.canvas[1].sum(dtype=np.int64) == 255 * 28 * 28


def test_sources_cover_every_other_digit_uniformly():
    big = generate(random_digits(5), canvas_size=60, num_clutter=2000, clutter_size=8, rng=split_rng("train", 3))
    offsets = (big.clutter_source - np.arange(5)[:, None]) % 5  # (5, 2000) in 1..4
    counts = np.bincount(offsets.ravel(), minlength=5)
    assert counts[0] == 0 and (abs(counts[1:] / offsets.size - 0.25) < 0.03).all()


def test_determinism_per_seed_and_split():
    digits = random_digits(40)
    a, b = make(digits, "cluttered", seed=5), make(digits, "cluttered", seed=5)
    assert a.canvas.tobytes() == b.canvas.tobytes() and a.position.tobytes() == b.position.tobytes()
    other_seed = make(digits, "cluttered", seed=6)
    other_split = make(digits, "cluttered", seed=5, split="test")
    for other in (other_seed, other_split):
        assert (other.canvas != a.canvas).any(axis=(1, 2, 3)).mean() > 0.9
        assert (other.position != a.position).any()


def test_positions_are_uniform_over_the_whole_canvas():
    """Every top-left from 0 to S - side is drawn, about equally often (digits and pieces)."""
    g = generate(random_digits(4000), canvas_size=40, num_clutter=4, clutter_size=8, rng=split_rng("train", 0))
    for values, side in ((g.position, 28), (g.clutter_position, 8)):
        counts = np.bincount(values.ravel(), minlength=40 - side + 1)
        assert len(counts) == 40 - side + 1 and counts.min() > 0
        expected = values.size / len(counts)
        assert (abs(counts - expected) < 5 * np.sqrt(expected)).all()


def test_translated_and_cluttered_place_the_digit_identically():
    digits = random_digits(40)
    np.testing.assert_array_equal(make(digits, "translated").position, make(digits, "cluttered").position)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        make(random_digits(1), "cluttered")
    with pytest.raises(ConfigError, match="data_seed"):
        split_rng("train", -1)
    make(random_digits(1), "translated")  # no clutter: one image is fine


# ------------------------------------------------------------------------------ build_sets / cache

def test_split_isolation(tmp_path, fake_loader):
    """Constant digits per split (train 1, valid 10, test 100): every canvas pixel is a sum
    of its own split's value only, so clutter never crosses splits."""
    fake_loader(fake_mnist(sizes=(60, 30, 30), values=(1, 10, 100)))
    sets = build_sets(config_for(tmp_path, "--data_type=cluttered"))
    for split, v in zip(SPLITS, (1, 10, 100)):
        allowed = {min(m * v, 255) for m in range(6)}
        values = set(np.unique(sets[split].x.numpy()).tolist())
        assert values <= allowed and len(values) >= 3, (split, values)


@pytest.mark.parametrize("name", list(DATASETS))
def test_build_sets_and_get_data_shapes(tmp_path, fake_loader, name):
    config = config_for(tmp_path, f"--data_type={name}", "--subset=9")
    data = get_data(config)
    S = DATASETS[name]["image_size"]
    assert (data.image_size, data.in_channels, data.num_classes) == ((S, S), 1, 10)
    mnist = data_loader.load_mnist(config)
    for split in SPLITS:
        dataset = data.loaders[split].dataset
        assert len(dataset) == 9
        batches = list(data.loaders[split])
        x, x_clean, y = batches[0]
        assert x.shape == (8, 1, S, S) and x_clean.shape == (8, 1, 28, 28) and y.shape == (8,)
        assert x.dtype == x_clean.dtype == torch.float32 and y.dtype == torch.int64
        assert 0 <= x.min() and x.max() <= 1
        assert sum(len(b[2]) for b in batches) == 9
        digits, labels = mnist[split]
        if split != "train":  # sequential order: compare with the source directly
            torch.testing.assert_close(x_clean, torch.as_tensor(digits[:8, None]).float() / 255)
            assert y.tolist() == labels[:8].tolist()
        if name != "mnist":
            for n in range(9):
                r, c = dataset.position[n].tolist()
                window = dataset.x[n, 0, r:r + 28, c:c + 28].numpy()
                assert (window >= digits[n]).all()
    if name == "mnist":
        assert not os.path.exists(config.data_dir) or not os.listdir(config.data_dir)


def test_subset_slices_the_cached_full_split(tmp_path, fake_loader):
    small = build_sets(config_for(tmp_path, "--data_type=cluttered", "--subset=5"))
    full = build_sets(config_for(tmp_path, "--data_type=cluttered"))
    assert len(full["train"]) == 40 and len(full["test"]) == 10
    for split in SPLITS:
        assert torch.equal(small[split].x, full[split].x[:5])
    assert len([f for f in os.listdir(tmp_path / "data") if f.endswith(".npz")]) == 1


def test_cache_is_used_and_invalidated_by_the_seed(tmp_path, fake_loader, monkeypatch, capsys):
    config = config_for(tmp_path, "--data_type=cluttered")
    first = build_sets(config)
    assert os.path.isfile(cache_path(config)) and os.path.isfile(cache_path(config)[:-4] + ".json")

    def no_generation(*args, **kwargs):
        raise AssertionError("generated although an intact cache exists")

    monkeypatch.setattr(data_loader, "generate", no_generation)
    again = build_sets(config)
    assert torch.equal(first["train"].x, again["train"].x) and torch.equal(first["test"].x, again["test"].x)

    monkeypatch.undo()
    fake_loader(fake_mnist())
    other = config_for(tmp_path, "--data_type=cluttered", "--data_seed=1")
    assert cache_path(other) != cache_path(config)
    reseeded = build_sets(other)
    assert not torch.equal(reseeded["train"].x, first["train"].x)
    assert "rebuilding" not in capsys.readouterr().err  # a new key is a plain build, not a repair


def test_cache_key_names_every_parameter_and_the_source(tmp_path):
    base = config_for(tmp_path, "--data_type=cluttered")
    keys = {cache_path(base), cache_path(config_for(tmp_path, "--data_type=cluttered", "--data_source=torchvision")),
            cache_path(config_for(tmp_path, "--data_type=mnist-clut")),
            cache_path(config_for(tmp_path, "--data_type=cluttered", "--data_seed=3"))}
    assert len(keys) == 4
    assert os.path.basename(cache_path(base)) == "cluttered_embedded_s60_k4_c8_seed0_v1.npz"


def test_changed_mnist_source_rebuilds(tmp_path, fake_loader, capsys):
    config = config_for(tmp_path, "--data_type=translated")
    first = build_sets(config)
    changed = fake_mnist()
    changed["test"] = (255 - changed["test"][0], changed["test"][1])
    fake_loader(changed)
    second = build_sets(config)
    assert "rebuilding" in capsys.readouterr().err
    assert not torch.equal(first["test"].x, second["test"].x)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_canvas_byte(path):
    """Change one pixel inside the stored canvas (uncompressed .npz: the bytes are in the file)."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = data.index(b"train/canvas.npy") + 4000
        data[i] ^= 0xFF
        f.seek(0)
        f.write(data)


def _valid_zip_other_pixel(path):
    """A well-formed .npz whose canvas differs in one pixel: only the SHA-256 can tell."""
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["test/canvas"][3, 0, 20, 20] ^= 1
    np.savez(path, **arrays)


def _garbage_manifest(path):
    with open(path[:-4] + ".json", "w") as f:
        f.write("{not json")


def _remove_manifest(path):
    os.remove(path[:-4] + ".json")


def _wrong_settings(path):
    import json

    json_path = path[:-4] + ".json"
    with open(json_path) as f:
        manifest = json.load(f)
    manifest["num_clutter"] = 3
    with open(json_path, "w") as f:
        json.dump(manifest, f)


@pytest.mark.parametrize("damage", [_truncate, _flip_canvas_byte, _valid_zip_other_pixel, _garbage_manifest,
                                    _remove_manifest, _wrong_settings])
def test_damaged_cache_is_reported_and_rebuilt_identically(tmp_path, fake_loader, capsys, damage):
    config = config_for(tmp_path, "--data_type=cluttered")
    mnist = data_loader.load_mnist(config)
    first = generated_splits(config, mnist)
    path = cache_path(config)
    damage(path)
    rebuilt = generated_splits(config, mnist)
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith(f"rebuilding {path}: ")]) == 1, err
    for split in SPLITS:
        for a, b in zip(first[split], rebuilt[split]):
            assert a.tobytes() == b.tobytes()
    splits, why = read_cache(path, generation_params(config) | {"source_sha256": source_digest(mnist)})
    assert splits is not None and why is None  # the repaired cache is intact
    assert not [f for f in os.listdir(tmp_path / "data") if f.startswith(".tmp_")]


# ------------------------------------------------------------------------------ preview

def test_show_saves_a_png(tmp_path, fake_loader, capsys):
    data_loader.main(["--data_type=mnist-clut", "--show=5", f"--data_dir={tmp_path}/data",
                      f"--plot_dir={tmp_path}/plots"])
    path = capsys.readouterr().out.strip()
    assert path == os.path.join(f"{tmp_path}/plots", "mnist-clut_samples.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_torchvision_source_offline_is_one_clear_line(monkeypatch, tmp_path):
    """No network here: torchvision's download fails, and the user gets one line naming the fix."""
    import torchvision.datasets

    import data_loader
    from arguments import ConfigError

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got:\n<urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(ConfigError) as err:
        data_loader.load_torchvision_mnist(str(tmp_path))
    assert "\n" not in str(err.value) and "--data_source embedded" in str(err.value)
