"""The experiment scripts refuse bad input with one line and exit code 2, writing nothing."""

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
