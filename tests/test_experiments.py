"""The experiment scripts refuse bad input with one line and exit code 2, writing nothing."""

import json
import os
import subprocess
import sys

from conftest import ROOT


def run(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_ship_refuses_a_missing_run_and_an_already_shipped_one():
    before = sorted(os.listdir(os.path.join(ROOT, "models")))
    for argv, needle in ((["no_such_run_xyz"], "cannot ship no_such_run_xyz"),
                         (["paper_mnist_s2"], "exists already"), ([], "usage")):
        done = run(os.path.join(ROOT, "experiments", "ship.py"), *argv)
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(os.path.join(ROOT, "models"))) == before


def test_ship_can_store_the_vae_in_float16_and_it_loads_back(tmp_path):
    """--vae_fp16 halves the VAE's weights on disk; they load into the float32 model and decode
    as the float32 weights do, to the rounding of float16. The RAM is copied untouched."""
    import importlib.util

    import torch

    from vae import HiddenStateVAE, load_vae, save_vae

    spec = importlib.util.spec_from_file_location("ship", os.path.join(ROOT, "experiments", "ship.py"))
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    torch.manual_seed(0)
    vae = HiddenStateVAE(hidden_size=16, latent_size=4, vae_hidden=32, canvas_shape=(1, 40, 40))
    (tmp_path / "ckpt" / "r").mkdir(parents=True)
    (tmp_path / "report" / "r").mkdir(parents=True)
    ram = {"model": {"w": torch.randn(3, 3)}, "optimizer": {"state": 1}, "scheduler": None, "rng": 1}
    torch.save(ram, tmp_path / "ckpt" / "r" / "best.pt")
    save_vae(str(tmp_path / "ckpt" / "r" / "vae.pt"), vae, torch.optim.Adam(vae.parameters()), 2, {"vae_beta": 1.0})
    (tmp_path / "ckpt" / "r" / "config.json").write_text("{}")
    (tmp_path / "report" / "r" / "metrics.json").write_text("{}")
    ship.ship("r", ckpt_dir=str(tmp_path / "ckpt"), report_dir=str(tmp_path / "report"),
              models_dir=str(tmp_path / "models"), vae_fp16=True)
    out = tmp_path / "models" / "r"
    stored = torch.load(out / "vae.pt", weights_only=True)
    assert {v.dtype for v in stored["vae"].values()} == {torch.float16} and stored["optimizer"] is None
    assert torch.equal(torch.load(out / "best.pt", weights_only=True)["model"]["w"], ram["model"]["w"])
    loaded, _ = load_vae(str(out / "vae.pt"), torch.device("cpu"), expected=vae.settings)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    z = torch.randn(5, 4)
    with torch.no_grad():
        want, got = vae.decode_canvas(z), loaded.decode_canvas(z)
    assert not torch.equal(got, want) and torch.allclose(got, want, atol=2e-3)


def test_probe_martingale_compares_both_probe_fits_on_a_shipped_model(tmp_path):
    script = os.path.join(ROOT, "experiments", "probe_martingale.py")
    small = ["--random_seed", "3", "--probe_images", "300", "--imagine_bank", "300", "--eig_samples", "4",
             f"--data_dir={tmp_path}"]
    done = run(script, "--images", "50", "--", "--ckpt_dir", "models", "--run_name", "paper_mnist_std0.1-0.03_s3",
               *small)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:]}
    assert set(lines) == {"distilled", "labels"}, done.stdout
    for values in lines.values():
        assert len(values) == 5 and all(abs(float(v)) < 5 for v in values), done.stdout  # glimpses 2..6
    missing = run(script, "--", "--ckpt_dir", "models", "--run_name", "no_such_run_xyz", f"--data_dir={tmp_path}")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    for bad in (["--images", "0", "--"], ["--", "--probe_images", "0"]):
        refused = run(script, *bad, "--ckpt_dir", "models", "--run_name", "paper_mnist_std0.1-0.03_s3",
                      f"--data_dir={tmp_path}")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "must be positive" in refused.stderr


def test_neighbour_weights_compares_the_weightings_on_a_shipped_model(tmp_path):
    script = os.path.join(ROOT, "experiments", "neighbour_weights.py")
    model = ["--ckpt_dir", "models", "--run_name", "paper_mnist_std0.1-0.03_s3", f"--data_dir={tmp_path}"]
    small = ["--random_seed", "3", "--probe_images", "300", "--imagine_bank", "300", "--eig_samples", "4"]
    done = run(script, "--images", "40", "--ridges", "0.1", "0.01", "--", *model, *small)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("probe EIG/IG")][0]
    rows = [line.split() for line in lines[header + 1:]]
    names = [" ".join(row[:row.index("EIG/IG")]) for row in rows if "EIG/IG" in row]
    assert names == ["uniform", "belief", "tilted 0.1", "tilted 0.01"], done.stdout
    gaps = [row for row in rows if row[0] == "gap"]
    assert len(gaps) == 4 and all(len(row) == 1 + 6 + 4 for row in gaps), done.stdout  # 6 glimpses, verdict
    assert all(abs(float(v)) < 5 for row in gaps for v in row[1:7])
    assert all(row[-1] in ("met", "missed") for row in gaps)
    assert rows[0][0] == "IG" and len(rows[0]) == 7
    for bad, said in ((["--images", "0", "--"], "must be positive"), (["--ridges", "0", "--"], "must be positive"),
                      (["--", "--imagine", "bernoulli"], "has none")):
        refused = run(script, *bad, *model)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert said in refused.stderr


def test_paper_table_refuses_an_unknown_or_missing_task():
    for argv in ([], ["mnist60"]):
        done = subprocess.run(["bash", os.path.join(ROOT, "experiments", "paper_table.sh"), *argv],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_shaping_study_tabulates_mean_and_spread_over_seeds(tmp_path):
    def report(run, seed, accuracy, error):
        folder = tmp_path / run
        folder.mkdir()
        g = {key: [0.5, 0.25] for key in ("ig", "eig", "eig_gap", "ece", "probe_accuracy", "probe_ig", "probe_eig")}
        g["accuracy"] = accuracy
        (folder / "metrics.json").write_text(json.dumps({
            "per_glimpse": g, "train_config": {"random_seed": seed}, "test_errors": {"M=1": error},
            "imagination": {"draw": "bernoulli", "prior": "data", "scale": 3.0}}))

    report("a1", 1, [0.2, 0.9], 0.02)
    report("a2", 2, [0.4, 0.95], 0.01)
    report("b1", 1, [0.5, 0.97], 0.03)
    done = run(os.path.join(ROOT, "experiments", "shaping_study.py"), "--task", "toy", "--runs", "A=a1,a2",
               "--runs", "B=b1", "--report_dir", str(tmp_path), "--no_csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "| A | accuracy (%) | 30.00 ± 14.14 | 92.50 ± 3.54 |" in lines  # mean ± sd over the 2 seeds
    assert "| B | accuracy (%) | 50.00 ± 0.00 | 97.00 ± 0.00 |" in lines
    assert "| A | eig | 0.500 ± 0.000 | 0.250 ± 0.000 |" in lines
    assert "A: test error at M = 1 2.00%, 1.00% (mean 1.50%, n = 2)" in lines
    missing = run(os.path.join(ROOT, "experiments", "shaping_study.py"), "--task", "toy", "--runs", "A=nope",
                  "--report_dir", str(tmp_path), "--no_csv")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "no " in missing.stderr and "nope" in missing.stderr

    # Recorded once; a run whose report is gone is read back from its recorded lines.
    study, glimpses = os.path.join(ROOT, "experiments", "shaping_study.py"), str(tmp_path / "glimpses.csv")
    args = ["--task", "toy", "--runs", "A=a1,a2", "--runs", "B=b1", "--report_dir", str(tmp_path), "--csv", glimpses]
    first = run(study, *args)
    assert first.returncode == 0 and first.stdout == done.stdout, first.stderr
    (tmp_path / "a2" / "metrics.json").unlink()
    again = run(study, *args)
    assert again.returncode == 0 and again.stdout == done.stdout, again.stderr
    with open(glimpses) as f:
        assert len(f.read().splitlines()) == 1 + 3 * 2  # the header, then 3 runs x 2 glimpses, once

    # --csv in a folder not made yet is made; a folder, or a CSV of something else, is refused.
    nested = tmp_path / "new" / "glimpses.csv"
    args = ["--task", "toy", "--runs", "A=a1", "--report_dir", str(tmp_path), "--csv"]  # a2's report is gone
    made = run(study, *args, str(nested))
    assert made.returncode == 0 and nested.is_file(), made.stderr
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    for path in (tmp_path, foreign):
        refused = run(study, *args, str(path))
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "--csv" in refused.stderr
    assert foreign.read_text() == "a,b\n1,2\n"


def table_rows(tmp_path, task, base, runs):
    """The results table's lines of `task` for result lines (name, seed, test error, extra
    flags) of commands `base` + extra, each with 50 epochs."""
    lines = ["task,run,seed,epochs,best_epoch,val_error,test_error_M1,test_error_policy_mean,"
             "test_error_M10,train_wall_min,threads,date,commit,command"]
    for name, seed, error, extra in runs:
        lines.append(f"{task},{name},{seed},50,50,0.1,{error},0.1,0.05,30.0,1,2026-11-30,abc,"
                     f"{base}{extra} --random_seed {seed} --run_name {name}")
    results = tmp_path / "results.csv"
    results.write_text("\n".join(lines) + "\n")
    done = run(os.path.join(ROOT, "experiments", "record.py"), "--table", "--results", str(results))
    assert done.returncode == 0, done.stderr
    recipes = done.stdout.split("\n\n")[0]  # the first table: one line per recipe; then every run
    return done.stdout, [line for line in recipes.splitlines() if line.startswith(f"| {task} |")]


def test_results_table_averages_seeds_of_one_recipe_only(tmp_path):
    """Seeds of one recipe share a line (mean and range); another --std is its own line and is
    named; run names and seeds do not split a recipe."""
    out, rows = table_rows(tmp_path, "cluttered", "python main.py --data_type cluttered --num_glimpses 8 --epochs 50",
                           (("a", 1, "0.1200", ""), ("b", 2, "0.1000", ""), ("c", 1, "0.0900", " --std 0.3")))
    assert len(rows) == 2
    assert "| 11.00% (10.00-12.00%, n=2) |" in rows[1] and "| defaults |" in rows[1]
    assert "| 9.00% |" in rows[0] and "| --std 0.3 |" in rows[0]
    assert "| mnist | 1.12% | 0.8% | not trained |" in out


def test_results_table_names_a_constant_std_where_the_default_anneals(tmp_path):
    """MNIST anneals the std by default: a run given the default spelt out shares its line, and
    a run with --std alone (a constant std) is labelled that way, not as --std_final None."""
    _, rows = table_rows(tmp_path, "mnist", "python main.py --data_type mnist --num_glimpses 6 --epochs 50",
                         (("a", 1, "0.0100", ""), ("b", 2, "0.0120", " --std 0.1 --std_final 0.03"),
                          ("c", 1, "0.0130", " --std 0.1"), ("d", 1, "0.0140", " --std 0.05 --locator_hidden 0")))
    assert len(rows) == 3, rows
    labels = {row.split(" | ")[7]: row for row in rows}
    assert set(labels) == {"defaults", "--std 0.1", "--std 0.05 --locator_hidden 0"}, labels
    assert "| 1.10% (1.00-1.20%, n=2) |" in labels["defaults"]
