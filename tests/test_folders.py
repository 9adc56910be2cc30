"""--data_type folder: your own images, end to end, and every bad folder refused before anything is written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))

from make_shapes import make_shapes  # noqa: E402

from arguments import ConfigError  # noqa: E402
from folders import scan, stratified_split  # noqa: E402

# Small enough for the suite, large enough to learn the shapes clearly above chance (1/3).
MODEL = ["--hidden_size=64", "--glimpse_hidden=32", "--loc_hidden=16", "--num_glimpses=4", "--batch_size=16",
         "--vae_epochs=1", "--vae_hidden=32", "--latent_size=4", "--eig_samples=2", "--plot_freq=0"]


def flags(tmp, data):
    """Every output under tmp; the images in data."""
    return ["--data_type=folder", f"--data_dir={data}", f"--cache_dir={tmp}/cache",
            *(f"--{name}_dir={tmp}/{name}" for name in ("ckpt", "logs", "plot", "report"))]


def run(tmp, data, *args):
    import main

    return main.main([*flags(tmp, data), *MODEL, *args])


def listing(path):
    """Every file under path, relative, with its bytes: to check that nothing changed."""
    out = {}
    for here, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(here, f), "rb") as handle:
                out[os.path.relpath(os.path.join(here, f), path)] = handle.read()
    return out


def test_stratified_split_is_seeded_disjoint_and_keeps_every_class():
    files = {c: [f"{c}/{i:03d}.png" for i in range(n)] for c, n in (("a", 50), ("b", 11), ("c", 3))}
    one = stratified_split(files, valid_size=0.2, test_size=0.1, seed=4)
    assert one == stratified_split(files, valid_size=0.2, test_size=0.1, seed=4)
    assert one != stratified_split(files, valid_size=0.2, test_size=0.1, seed=5)
    every = [p for pairs in one.values() for p, _ in pairs]
    assert sorted(every) == sorted(p for paths in files.values() for p in paths) and len(set(every)) == len(every)
    count = {split: {label: sum(1 for _, y in pairs if y == label) for label in range(3)} for split, pairs in one.items()}
    assert count["test"] == {0: 5, 1: 1, 2: 1} and count["valid"] == {0: 10, 1: 2, 2: 1}
    assert count["train"] == {0: 35, 1: 8, 2: 1}
    assert all(p.startswith("abc"[y]) for pairs in one.values() for p, y in pairs)
    with pytest.raises(ConfigError, match="class c has 2 image"):
        stratified_split({"a": ["a/1", "a/2", "a/3"], "c": ["c/1", "c/2"]}, valid_size=0.1, test_size=0.1, seed=0)


def test_train_val_test_folders_are_the_splits(tmp_path):
    for split in ("train", "val", "test"):
        make_shapes(str(tmp_path / "d" / split), per_class=2, seed=len(split), classes=("x", "y"))
    (tmp_path / "d" / "train" / "x" / "deeper").mkdir()
    (tmp_path / "d" / "train" / "x" / "deeper" / "more.png").write_bytes((tmp_path / "d/val/x/0000.png").read_bytes())
    layout, classes, files = scan(str(tmp_path / "d"))
    assert layout == "splits" and classes == ["x", "y"]
    assert files["train"]["x"] == ["train/x/0000.png", "train/x/0001.png", "train/x/deeper/more.png"]
    assert files["test"]["y"] == ["test/y/0000.png", "test/y/0001.png"]
    (tmp_path / "d" / "val").rename(tmp_path / "d" / "other")
    with pytest.raises(ConfigError, match="but not val/"):
        scan(str(tmp_path / "d"))


def test_a_folder_trains_tests_and_explains_its_images(tmp_path, capsys):
    data = shapes = make_shapes(str(tmp_path / "shapes"), per_class=300, seed=0)
    run(tmp_path, data, "--epochs=16", "--run_name=shapes")
    run_dir = tmp_path / "ckpt" / "shapes"
    split = json.loads((run_dir / "split.json").read_text())
    assert split["classes"] == ["circle", "square", "triangle"] and split["image_size"] == [48, 64]
    assert {s: sum(map(len, by_class.values())) for s, by_class in split["splits"].items()} == \
        {"train": 720, "valid": 90, "test": 90}

    report = run(tmp_path, data, "--is_train=False", "--run_name=shapes")
    assert report["count"] == 90 and report["test_accuracy"] > 0.5, report["test_accuracy"]  # chance: 1/3
    files = set(os.listdir(tmp_path / "report" / "shapes"))
    assert {"reconstructions.png", "glimpses.gif", "metrics.json", "summary.md"} <= files
    assert len(report["per_glimpse"]["recon_mse"]) == 4

    # The run reads its own split back, even when the folder has grown since.
    make_shapes(str(tmp_path / "extra"), per_class=1, seed=9, classes=("circle",))
    images = [str(tmp_path / "extra" / "circle" / "0000.png"), os.path.join(shapes, "square", "0000.png")]
    capsys.readouterr()
    explained = run(tmp_path, data, "--is_train=False", "--run_name=shapes", "--explain_image", *images)
    out = capsys.readouterr().out
    assert [e["prediction"] for e in explained] == [line.split(": ")[1].split(" (")[0]
                                                    for line in out.splitlines() if line.startswith(tuple(images))]
    folder = tmp_path / "report" / "shapes" / "images"
    assert {"01_0000.png", "01_0000.gif", "02_0000.png", "02_0000.gif", "explanations.json"} <= set(os.listdir(folder))
    saved = json.loads((folder / "explanations.json").read_text())["images"]
    for e in saved:
        assert len(e["glimpses"]) == 4
        for g in e["glimpses"]:
            p = [t["probability"] for t in g["top"]]
            assert len(p) == 3 and p == sorted(p, reverse=True) and sum(p) <= 1 + 1e-6
            assert {t["class"] for t in g["top"]} <= {"circle", "square", "triangle"}
    assert "metrics.json" in os.listdir(tmp_path / "report" / "shapes")  # the test report is kept

    # A file that is not an image, or a file of the split that went away: one clear refusal,
    # and nothing written.
    (tmp_path / "note.png").write_text("not an image")
    before = listing(tmp_path)
    with pytest.raises(ConfigError, match="note.png: not an image"):
        run(tmp_path, data, "--is_train=False", "--run_name=shapes", "--explain_image", str(tmp_path / "note.png"))
    os.remove(os.path.join(shapes, split["splits"]["test"]["circle"][0]))
    with pytest.raises(ConfigError, match="missing or unreadable"):
        run(tmp_path, data, "--is_train=False", "--run_name=shapes")
    del before["shapes/" + split["splits"]["test"]["circle"][0]]
    assert listing(tmp_path) == before


def test_decoded_folder_is_cached_and_a_changed_file_is_decoded_again(tmp_path, capsys):
    from folders import cache_path, load

    from arguments import get_config

    data = make_shapes(str(tmp_path / "d"), per_class=4, seed=1, classes=("p", "q"))
    config = get_config(flags(tmp_path, data) + ["--valid_size=0.25", "--test_size=0.25"])
    first, classes, record = load(config)
    assert classes == ["p", "q"] and os.path.isfile(cache_path(config))
    assert first["train"][0].shape == (4, 3, 48, 64) and first["train"][0].dtype == np.uint8
    capsys.readouterr()
    again, _, _ = load(config)
    assert "decoding" not in capsys.readouterr().err
    for split in first:
        np.testing.assert_array_equal(first[split][0], again[split][0])
    (tmp_path / "d" / "q" / "0000.png").write_bytes((tmp_path / "d" / "p" / "0001.png").read_bytes())
    changed, _, _ = load(config)
    assert "again" in capsys.readouterr().err
    # Resized on request: bilinear to H x W.
    config.image_size = [24, 40]
    small, _, record = load(config)
    assert small["test"][0].shape[1:] == (3, 24, 40) and record["resize"] == [24, 40]


def _one_class(d):
    make_shapes(str(d), per_class=3, classes=("only",))


def _empty_class(d):
    make_shapes(str(d), per_class=3, classes=("a", "b"))
    (d / "c").mkdir()
    (d / "c" / "README.txt").write_text("not an image")


def _mixed_channels(d):
    from PIL import Image

    make_shapes(str(d), per_class=3, classes=("a", "b"))
    Image.open(d / "b" / "0000.png").convert("L").save(d / "b" / "0000.png")


def _mixed_sizes(d):
    make_shapes(str(d), per_class=3, classes=("a",))
    make_shapes(str(d), per_class=3, classes=("b",), size=(40, 64))


@pytest.mark.parametrize("make, extra, message", [
    (None, [], "is not a folder"),
    (_one_class, [], "at least 2"),
    (_empty_class, [], "holds no image"),
    (_mixed_channels, [], "mixes grey and colour"),
    (_mixed_sizes, [], "differ in size"),
    (_mixed_sizes, ["--image_size", "12"], "largest retina patch"),
])
def test_a_bad_folder_is_refused_and_nothing_is_written(tmp_path, make, extra, message):
    data = tmp_path / "d"
    if make is not None:
        data.mkdir()
        make(data)
    before = listing(tmp_path)
    with pytest.raises((ConfigError, SystemExit)) as err:
        run(tmp_path, data, "--epochs=1", "--run_name=bad", *extra)
    if isinstance(err.value, SystemExit):
        assert err.value.code == 2
    else:
        assert message in str(err.value), err.value
    assert listing(tmp_path) == before


def test_files_that_are_not_images_are_skipped_and_counted(tmp_path, capsys):
    data = tmp_path / "d"
    make_shapes(str(data), per_class=5, classes=("a", "b"))
    (data / "a" / "notes.txt").write_text("a note")
    (data / "b" / "broken.png").write_bytes(b"\x89PNG but truncated")
    run(tmp_path, data, "--epochs=1", "--run_name=skip", "--valid_size=0.2", "--test_size=0.2")
    assert "skipped 2 file(s)" in capsys.readouterr().err
    split = json.loads((tmp_path / "ckpt" / "skip" / "split.json").read_text())["splits"]
    assert sum(len(paths) for by_class in split.values() for paths in by_class.values()) == 10


def test_bad_input_exits_2_with_one_line_from_the_command_line(tmp_path):
    make_shapes(str(tmp_path / "d"), per_class=3, classes=("a",))
    argv = [sys.executable, os.path.join(ROOT, "main.py"), *flags(tmp_path, tmp_path / "d"), "--epochs=1"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "at least 2" in done.stderr, done.stderr
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "cache").exists()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--explain_image", "x.png"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "use it with --is_train=False" in done.stderr, done.stderr
