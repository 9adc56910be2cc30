import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def dir_flags(tmp):
    """Flags that keep every output of a run inside tmp."""
    return [f"--{name}_dir={tmp}/{name}" for name in ("ckpt", "logs", "plot", "report", "data")]


@pytest.fixture
def run_cli(tmp_path):
    """Run `python main.py ARGS` in a subprocess with outputs under tmp_path."""

    def run(*args, dirs=True):
        argv = [sys.executable, os.path.join(ROOT, "main.py"), *args, *(dir_flags(tmp_path) if dirs else [])]
        return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=600)

    return run


@pytest.fixture
def run_main(tmp_path):
    """Call main.main(ARGS) in this process with outputs under tmp_path."""
    import main

    def run(*args):
        return main.main([*args, *dir_flags(tmp_path)])

    return run


def tiny_ram(seed=None, **overrides):
    """A small RAM for 28x28, 1-channel, 10-class input (8x8 retina, 1 scale, D = 12);
    `overrides` replace any constructor argument. Seeds torch first when `seed` is given."""
    from model import RecurrentAttention

    if seed is not None:
        import torch

        torch.manual_seed(seed)
    settings = dict(in_channels=1, num_classes=10, patch_size=8, num_patches=1, glimpse_scale=1,
                    glimpse_hidden=16, loc_hidden=8, hidden_size=12, std=0.1)
    return RecurrentAttention(**{**settings, **overrides})
