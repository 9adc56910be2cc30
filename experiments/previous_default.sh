#!/usr/bin/env bash
# The default before 2026-11-29 (shipped as models/ram_6_8x8_1_1_mnist_HardAtt): 200 epochs,
# lr 1e-3 divided by 10 after 20 epochs without validation gain, early stop after 50, the
# paper's linear location network, location std 0.05.
set -euo pipefail
old="--epochs 200 --lr_schedule plateau --locator_hidden 0 --std 0.05 --run_name ram_6_8x8_1_1_mnist_HardAtt_previous"
python main.py $old
python main.py $old --is_train=False
