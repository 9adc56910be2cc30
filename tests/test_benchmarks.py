"""benchmarks/compare_reference.py without a reference checkout: one line, exit 0."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "compare_reference.py")


@pytest.mark.parametrize("reference", [None, "missing"])
def test_compare_reference_skips_without_a_checkout(tmp_path, reference):
    argv = [sys.executable, SCRIPT]
    if reference:
        argv += ["--reference", str(tmp_path / reference)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped:"), proc.stdout
    assert "--reference PATH" in lines[0]
    assert os.listdir(tmp_path) == [], "a skipped comparison wrote files"
