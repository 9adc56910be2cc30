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
