#!/usr/bin/env bash
# The main job: the paper's 28x28 MNIST setting with every default (200 epochs at most,
# lr / 10 after 20 epochs without validation gain, early stop after 50), then its report.
set -euo pipefail
python main.py
python main.py --is_train=False
