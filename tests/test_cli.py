"""main.py end to end: smoke train + test, resume equals unbroken, bad input exits 2."""

import json
import math
import os

import pytest
import torch
from conftest import ROOT

SMALL = ["--subset=256", "--batch_size=64", "--hidden_size=32", "--glimpse_hidden=16", "--loc_hidden=16",
         "--num_glimpses=3", "--plot_freq=1", "--vae_epochs=1", "--vae_hidden=32", "--latent_size=4",
         "--eig_samples=4"]
REPORT_FILES = {"reconstructions.png", "reconstruction_error.png", "information_gain.png", "reliability.png",
                "glimpses.png", "glimpses.gif", "metrics.json", "summary.md"}


def test_smoke_train_then_test(run_cli, tmp_path):
    train = run_cli(*SMALL, "--epochs=1", "--run_name=smoke")
    assert train.returncode == 0, train.stderr
    assert "epoch 1/1" in train.stdout
    run = tmp_path / "ckpt" / "smoke"
    assert {"latest.pt", "best.pt", "config.json"} <= set(os.listdir(run))
    assert json.loads((run / "config.json").read_text())["num_glimpses"] == 3
    assert os.listdir(tmp_path / "logs" / "smoke"), "no TensorBoard events"
    assert (tmp_path / "plot" / "smoke" / "epoch_1.png").stat().st_size > 0

    test = run_cli(*SMALL, "--is_train=False", "--run_name=smoke")
    assert test.returncode == 0, test.stderr
    assert "no VAE for run smoke yet: training it first" in test.stdout
    assert (run / "vae.pt").stat().st_size > 0
    report = tmp_path / "report" / "smoke"
    assert REPORT_FILES <= set(os.listdir(report))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["count"] == 256 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert f"{metrics['test_accuracy']:.2%}" in test.stdout
    errors = metrics["test_errors"]
    assert set(errors) == {"M=1", "policy mean", "M=10"}
    assert errors["M=1"] == metrics["test_error"] and all(0 <= e <= 1 for e in errors.values())
    assert metrics["val_accuracy"] > 0
    for key in ("accuracy", "entropy", "ig", "ig_se", "eig", "eig_se", "eig_gap", "eig_gap_se", "eig_over_ig",
                "ece", "nll", "ece_scaled", "nll_scaled", "temperature", "recon_mse", "recon_mse_se", "recon_bce",
                "probe_accuracy", "probe_nll", "probe_ece", "probe_ig", "probe_eig", "probe_eig_gap",
                "probe_eig_over_ig", "glimpse_nll", "glimpse_nll_se"):
        assert len(metrics["per_glimpse"][key]) == 3, key
    g = metrics["per_glimpse"]
    # the defaults: the neighbours of the first 20,000 (here all 256) training images, tilted to
    # the probes' belief, the data prior
    assert metrics["imagination"] == {"draw": "neighbours", "prior": "data", "bank": 256,
                                      "weights": "probe belief, tilted (ridge 0.05)"}
    assert all(v >= 0 for v in g["probe_eig"] + g["probe_eig_gap"] + g["glimpse_nll"])
    assert all(v >= 0 for v in g["eig"] + g["eig_gap"]) and all(0 <= v <= 1 for v in g["ece"])
    assert sum(map(sum, metrics["reliability"]["count"])) == 3 * 256
    assert metrics["train_config"]["epochs"] == 1 and metrics["config"]["is_train"] is False
    assert "| 3 |" in (report / "summary.md").read_text()

    # A second test run reuses the VAE; imagined by it: Bernoulli draws, the width chosen on validation.
    vae_bytes = (run / "vae.pt").read_bytes()
    drawn = run_cli(*SMALL, "--is_train=False", "--run_name=smoke", "--imagine=bernoulli")
    assert drawn.returncode == 0, drawn.stderr
    assert (run / "vae.pt").read_bytes() == vae_bytes
    imagined = json.loads((report / "metrics.json").read_text())["imagination"]
    assert imagined["draw"] == "bernoulli" and imagined["prior"] == "data"
    nll = imagined["validation_glimpse_nll"]
    assert set(nll) == {"1", "2", "3", "5"} and imagined["scale"] == float(min(nll, key=nll.get))
    assert "posterior width chosen on validation" in drawn.stdout
    # --train_vae=True continues the VAE up to --vae_epochs.
    more = run_cli(*SMALL, "--is_train=False", "--run_name=smoke", "--train_vae=True", "--vae_epochs=2")
    assert more.returncode == 0, more.stderr
    assert "vae epoch 2/2" in more.stdout and "vae epoch 1/2" not in more.stdout
    # A VAE of other settings is refused, and kept.
    vae_bytes = (run / "vae.pt").read_bytes()
    one_line_error(run_cli(*SMALL, "--is_train=False", "--run_name=smoke", "--latent_size=8"), "latent_size")
    assert (run / "vae.pt").read_bytes() == vae_bytes


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_resume_equals_unbroken_run(run_main, tmp_path, schedule):
    # A constant std: an annealed one (MNIST's default) stretches its schedule when a resume
    # changes --epochs, as this one does; tests/test_faults.py resumes annealed runs.
    args = [*SMALL, "--std=0.1", f"--lr_schedule={schedule}"]
    run_main(*args, "--epochs=2", "--run_name=straight")
    run_main(*args, "--epochs=1", "--run_name=broken")
    run_main(*args, "--epochs=2", "--run_name=broken", "--resume=True")
    a = weights(tmp_path / "ckpt" / "straight" / "latest.pt")
    b = weights(tmp_path / "ckpt" / "broken" / "latest.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in ("best_acc", "counter"):
        assert a[key] == b[key]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--resume=maybe"], "--resume"),
    (["--is_train=Flase"], "--is_train"),
    (["--num_glimpse=4"], "unrecognized arguments"),
    (["--patch_size=0"], "--patch_size"),
    (["--std=0"], "--std"),
    (["--std=nan"], "--std"),
    (["--std_final=0"], "--std_final"),
    (["--fresh_canvases=True"], "--fresh_canvases"),
    (["--data_type=translated", "--augment_rotation=10"], "--fresh_canvases=True"),
    (["--data_type=translated", "--fresh_canvases=True", "--augment_scale=1"], "--augment_scale"),
    (["--data_type=translated", "--fresh_canvases=True", "--augment_rotation=nan"], "--augment_rotation"),
    (["--batch_size=-3"], "--batch_size"),
    (["--patch_size=16", "--num_patches=3", "--glimpse_scale=2"], "largest retina patch"),
    (["--data_type=imagenet"], "--data_type"),
    (["--run_name=../x"], "--run_name"),
    (["--imagine_scale=wide"], "--imagine_scale"),
    (["--imagine_scale=-1"], "--imagine_scale"),
    (["--eig_estimator=mle"], "--eig_estimator"),
    (["--probe_fit=soft"], "--probe_fit"),
    (["--imagine_weights=1"], "--imagine_weights"),
])
def test_bad_flags_exit_2_with_one_line(run_cli, tmp_path, args, needle):
    result = run_cli(*args)
    one_line_error(result, needle)
    assert not (tmp_path / "ckpt").exists(), "a rejected command wrote files"


def test_checkpoint_errors_are_clear_and_destroy_nothing(run_cli, tmp_path):
    one_line_error(run_cli(*SMALL, "--is_train=False", "--run_name=none"), "no checkpoint")
    one_line_error(run_cli(*SMALL, "--resume=True", "--run_name=none"), "no checkpoint")

    assert run_cli(*SMALL, "--epochs=1", "--run_name=r").returncode == 0
    run = tmp_path / "ckpt" / "r"
    before = {name: (run / name).read_bytes() for name in os.listdir(run)}

    # A fresh run over an existing one is refused.
    one_line_error(run_cli(*SMALL, "--epochs=1", "--run_name=r"), "--resume=True")
    # Different model settings name the differing field.
    one_line_error(run_cli(*SMALL, "--hidden_size=48", "--is_train=False", "--run_name=r"), "hidden_size")
    # A run of the std 0.05 of before 2026-11-30, tested without --std, is told so.
    one_line_error(run_cli(*SMALL, "--std=0.05", "--is_train=False", "--run_name=r"), "std=0.1 in the checkpoint but 0.05")
    one_line_error(run_cli(*SMALL, "--hidden_size=48", "--epochs=2", "--resume=True", "--run_name=r"),
                   "hidden_size")
    # A resume may not change how the run learns either; a test may.
    one_line_error(run_cli(*SMALL, "--reward=infogain", "--epochs=2", "--resume=True", "--run_name=r"),
                   "reward='default' in the checkpoint but 'infogain' here")
    assert {name: (run / name).read_bytes() for name in os.listdir(run)} == before
    # A run of MNIST's constant std (the default before 2026-11-30 night), tested with today's
    # default (annealed), is told to give --std alone.
    assert run_cli(*SMALL, "--epochs=1", "--std=0.1", "--run_name=const").returncode == 0
    one_line_error(run_cli(*SMALL, "--is_train=False", "--run_name=const"),
                   "std_final=None in the checkpoint but 0.03 here (its std was constant: give --std 0.1 alone)")

    (run / "best.pt").write_bytes(before["best.pt"][: len(before["best.pt"]) // 2])  # truncated
    one_line_error(run_cli(*SMALL, "--is_train=False", "--run_name=r"), "corrupt")
    (run / "latest.pt").write_bytes(b"not a checkpoint")
    one_line_error(run_cli(*SMALL, "--epochs=2", "--resume=True", "--run_name=r"), "corrupt")


def test_help_lists_flags(run_cli):
    result = run_cli("--help", dirs=False)
    assert result.returncode == 0
    for flag in ("--num_glimpses", "--resume", "--is_train", "--M", "--data_source"):
        assert flag in result.stdout


PRESETS = ["HardAtt", "HardAttLSTM", "HardAttRewardShaping", "HardAttAC2", "HardAttAC2RewardShaping",
           "HardAttAC2LSTMRewardShaping"]


@pytest.mark.parametrize("mode", PRESETS)
def test_every_preset_trains_resumes_and_tests(run_main, tmp_path, mode):
    from arguments import get_config

    run = get_config([*SMALL, f"--mode={mode}"]).run_name
    assert mode in run
    run_main(*SMALL, f"--mode={mode}", "--epochs=1")
    run_main(*SMALL, f"--mode={mode}", "--epochs=2", "--resume=True")
    state = weights(tmp_path / "ckpt" / run / "latest.pt")
    assert state["epoch"] == 2 and state["config"]["mode"] == mode
    g = run_main(*SMALL, f"--mode={mode}", "--is_train=False")["per_glimpse"]
    # The VAE of an LSTM reads its cell state too.
    assert weights(tmp_path / "ckpt" / run / "vae.pt")["settings"].get("state", "h") == ("hc" if "LSTM" in mode else "h")
    assert len(g["ig"]) == len(g["eig"]) == 3
    # Realised IG telescopes: sum_t IG_t = log C - mean H_T.
    assert abs(sum(g["ig_mc"]) - (math.log(10) - g["entropy"][-1])) < 1e-4


def test_compare_overlays_two_reports(run_main, run_cli, tmp_path):
    for mode in ("HardAtt", "HardAttRewardShaping"):
        run_main(*SMALL, f"--mode={mode}", "--epochs=1", f"--run_name={mode}")
        run_main(*SMALL, f"--mode={mode}", "--is_train=False", f"--run_name={mode}")
    result = run_cli("--compare", "HardAtt", "HardAttRewardShaping")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report" / "compare_HardAtt_vs_HardAttRewardShaping.png").stat().st_size > 0
    one_line_error(run_cli("--compare", "HardAtt", "missing"), "no report for run missing")
    one_line_error(run_cli("--compare", "HardAtt"), "at least two")


def test_explicit_flags_win_over_the_preset_and_name_the_run():
    from arguments import get_config

    config = get_config(["--mode=HardAttRewardShaping", "--core_net_type=lstm"])
    assert (config.core_net_type, config.reward, config.training_mode) == ("lstm", "infogain", "reinforce")
    assert config.run_name == "ram_6_8x8_1_1_mnist_HardAttRewardShaping_lstm"
    assert get_config([]).run_name == "ram_6_8x8_1_1_mnist_HardAtt"


def test_the_location_std_defaults_per_data_type_and_the_flag_wins():
    from arguments import DATA_TYPES, LOCATION_STD, get_config

    assert set(LOCATION_STD) == set(DATA_TYPES)
    assert get_config([]).std == 0.1
    assert get_config(["--data_type=cluttered", "--num_glimpses=8"]).std == 0.2
    assert get_config(["--data_type=cluttered", "--std=0.05"]).std == 0.05


def test_mnist_anneals_the_std_by_default_and_std_alone_keeps_it_constant():
    from arguments import DATA_TYPES, STD_FINAL, get_config

    assert set(STD_FINAL) <= set(DATA_TYPES)
    def spelled(*argv):
        config = get_config(list(argv))
        return config.std, config.std_final

    assert spelled() == (0.1, 0.03)                                  # python main.py: the MNIST row's recipe
    assert spelled("--std=0.1") == (0.1, None)                       # --std alone: constant, as before
    assert spelled("--std=0.05") == (0.05, None)                     # the old shipped models' commands
    assert spelled("--std_final=0.05") == (0.1, 0.05)
    assert spelled("--std=0.2", "--std_final=0.03") == (0.2, 0.03)
    assert spelled("--data_type=cluttered") == (0.2, None)           # measured on MNIST only
    assert spelled("--data_type=folder", "--data_dir=x", "--image_size=28") == (0.1, None)


def test_annealed_std_trains_each_epoch_at_its_value_and_tests_at_the_final_one(run_cli, run_main, tmp_path,
                                                                                 monkeypatch):
    import modules

    args = [*SMALL, "--std=0.3", "--std_final=0.05", "--run_name=anneal"]
    seen = []  # (training?, std) of every rollout
    rollout = modules.LocationNetwork.log_prob

    def spy(self, l_raw, mu):
        seen.append((torch.is_grad_enabled(), self.std))
        return rollout(self, l_raw, mu)

    monkeypatch.setattr(modules.LocationNetwork, "log_prob", spy)
    run_main(*args, "--epochs=3")
    training = [std for grad, std in seen if grad]
    assert sorted(set(training), reverse=True) == pytest.approx([0.3, 0.175, 0.05])  # epochs 1, 2, 3
    saved = json.loads((tmp_path / "ckpt" / "anneal" / "config.json").read_text())
    assert (saved["std"], saved["std_final"]) == (0.3, 0.05)

    from arguments import get_config
    from model import RecurrentAttention

    config = get_config(args)
    assert RecurrentAttention.from_config(config, in_channels=1, num_classes=10).locator.std == 0.05
    assert RecurrentAttention.from_config(get_config(SMALL), in_channels=1, num_classes=10).locator.std == 0.03
    assert RecurrentAttention.from_config(get_config([*SMALL, "--std=0.1"]), in_channels=1,
                                          num_classes=10).locator.std == 0.1
    # The test needs the schedule it was trained with; without --std_final it is refused.
    one_line_error(run_cli(*SMALL, "--std=0.3", "--is_train=False", "--run_name=anneal"), "std_final")
    one_line_error(run_cli(*SMALL, "--std=0.3", "--std_final=0.1", "--is_train=False", "--run_name=anneal"),
                   "std_final")
    seen.clear()
    report = run_main(*args, "--is_train=False", "--vae_epochs=1")
    assert report["train_config"]["std_final"] == 0.05
    assert {std for _, std in seen} == {0.05}  # the VAE's data, the test, the report: the final policy


def test_fresh_canvases_change_every_epoch_and_a_resumed_run_equals_an_unbroken_one(run_cli, run_main, tmp_path,
                                                                                    monkeypatch):
    import trainer

    args = [*SMALL, "--data_type=mnist-clut", "--fresh_canvases=True"]
    seen = []  # (epoch, the training canvases it trained on)
    redraw = trainer.redraw_canvases

    def spy(dataset, config, epoch):
        redraw(dataset, config, epoch)
        seen.append((epoch, dataset.x.clone()))

    monkeypatch.setattr(trainer, "redraw_canvases", spy)
    run_main(*args, "--epochs=3", "--run_name=straight")
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    canvases = [x for _, x in seen]
    assert not torch.equal(canvases[0], canvases[1]) and not torch.equal(canvases[1], canvases[2])
    run_main(*args, "--epochs=1", "--run_name=broken")  # epoch 1's lr is the same for any --epochs
    run_main(*args, "--epochs=3", "--run_name=broken", "--resume=True")
    assert torch.equal(seen[-2][1], canvases[1]) and torch.equal(seen[-1][1], canvases[2])  # resumed: 2, 3
    a = weights(tmp_path / "ckpt" / "straight" / "latest.pt")
    b = weights(tmp_path / "ckpt" / "broken" / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # Continuing without the flag would mix two experiments in one run: refused, named.
    one_line_error(run_cli(*SMALL, "--data_type=mnist-clut", "--epochs=4", "--run_name=broken", "--resume=True"),
                   "fresh_canvases")


def test_the_neighbour_imagination_reports_and_drives_the_eig_policy(run_main, tmp_path):
    args = [*SMALL, "--run_name=nbr"]
    run_main(*args, "--epochs=1")
    report = run_main(*args, "--is_train=False", "--imagine=neighbours", "--imagine_bank=64",
                      "--policy", "learned", "eig", "--policy_images=16", "--eig_candidates=3")
    assert report["imagination"] == {"draw": "neighbours", "prior": "data", "bank": 64,
                                     "weights": "probe belief, tilted (ridge 0.05)"}
    assert report["eig_estimator"] == "jackknife" and report["probe_fit"] == "labels"
    g = report["per_glimpse"]
    assert all(v >= 0 and math.isfinite(v) for v in g["eig"] + g["probe_eig"] + g["glimpse_nll"])
    assert all(math.isfinite(v) for v in g["eig_gap"] + g["probe_eig_gap"])  # a jackknifed gap may be < 0
    assert len(report["policies"]["eig"]["eig"]) == 3 and report["policies"]["eig"]["images"] == 16
    summary = (tmp_path / "report" / "nbr" / "summary.md").read_text()
    assert "whose RAM state after as many glimpses is nearest (of the first 64)" in summary
    assert "fitted to the labels)" in summary


def test_neighbours_weighted_to_the_belief_report_how(run_main, tmp_path):
    args = [*SMALL, "--run_name=weighted"]
    run_main(*args, "--epochs=1")
    for probe_images, weights, read in ((200, "belief", "probe belief"), (0, "belief", "classifier belief"),
                                        (200, "tilted", "probe belief, tilted (ridge 0.05)")):
        report = run_main(*args, "--is_train=False", "--imagine_bank=64", f"--imagine_weights={weights}",
                          f"--probe_images={probe_images}", "--policy", "learned", "eig", "--policy_images=8",
                          "--eig_candidates=3")
        assert report["imagination"] == {"draw": "neighbours", "prior": "data", "bank": 64, "weights": read}
        g = report["per_glimpse"]
        assert all(v >= 0 and math.isfinite(v) for v in g["eig"] + g["glimpse_nll"] + report["policies"]["eig"]["eig"])
        summary = (tmp_path / "report" / "weighted" / "summary.md").read_text()
        assert f"weighted to the image's {read}" in summary


def test_batch_size_one_trains_and_reports(run_main, tmp_path):
    args = [*SMALL, "--subset=5", "--batch_size=1", "--run_name=b1"]
    run_main(*args, "--epochs=1")
    report = run_main(*args, "--is_train=False")
    assert report["count"] == 5 and len(report["per_glimpse"]["eig"]) == 3


def test_cluttered_run_end_to_end_with_the_clean_digit(run_main, tmp_path):
    args = [*SMALL, "--data_type=mnist-clut", "--run_name=clut"]
    run_main(*args, "--epochs=1")
    report = run_main(*args, "--is_train=False")
    assert report["config"]["patch_size"] == 8 and report["count"] == 256
    assert REPORT_FILES <= set(os.listdir(tmp_path / "report" / "clut"))
    # The VAE has a canvas head for the 40x40 input and a clean head for the 28x28 digit.
    vae = weights(tmp_path / "ckpt" / "clut" / "vae.pt")
    assert vae["settings"]["canvas_size"] == 40 and vae["settings"]["clean_size"] == 28


SHIPPED = sorted(d for d in os.listdir(os.path.join(ROOT, "models"))
                 if os.path.isfile(os.path.join(ROOT, "models", d, "best.pt")))


def shipped_error(run, *, subset=1000):
    """Test error (M = 1, torch seed 0) of shipped model `run` on the first `subset` test
    images, loaded with the model settings it was trained with."""
    from arguments import LEGACY_DEFAULTS, MODEL_FIELDS, get_config
    from data_loader import get_data
    from trainer import Trainer

    with open(os.path.join(ROOT, "models", run, "config.json")) as f:
        saved = {**LEGACY_DEFAULTS, **json.load(f)}
    argv = [f"--{k}={saved[k]}" for k in MODEL_FIELDS if saved.get(k) is not None]
    config = get_config([*argv, f"--subset={subset}", f"--ckpt_dir={ROOT}/models", f"--run_name={run}"])
    trainer = Trainer(config, get_data(config))
    assert trainer.load("best.pt")["epoch"] >= 1
    torch.manual_seed(0)
    return 1 - trainer.evaluate("test", M=1)["accuracy"]


@pytest.mark.parametrize("run", SHIPPED)
def test_shipped_model_loads_and_classifies(run):
    """Every model in models/ loads into today's code with the settings it was trained with
    and errs on the first 1,000 test images (M = 1, seed 0) within 0.5 points (5 images) of
    the figure measured when it was shipped (models/<run>/check.json, the band that
    models/README.md states)."""
    with open(os.path.join(ROOT, "models", run, "check.json")) as f:
        expected = json.load(f)["test_error_first_1000_M1_seed0"]
    error = shipped_error(run)
    assert abs(error - expected) <= 0.005, (run, error, expected)


def test_report_does_not_depend_on_whether_the_vae_was_just_trained(run_main):
    args = [*SMALL, "--run_name=rep"]
    run_main(*args, "--epochs=1")
    first = run_main(*args, "--is_train=False")  # trains the VAE first
    again = run_main(*args, "--is_train=False")  # reuses it
    assert first["per_glimpse"] == again["per_glimpse"]
    assert first["test_accuracy"] == again["test_accuracy"]
