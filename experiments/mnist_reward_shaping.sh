#!/usr/bin/env bash
# HardAtt vs HardAttRewardShaping on MNIST: same seed, same epochs, a faster lr schedule
# (lr / 10 after 4 epochs without validation gain) so that 40 epochs reach the lr drop.
# The defaults of then (before 2026-11-29) are spelt out: plateau lr, linear location
# network, std 0.05. Run from the repository root; the report of each run lands in report/<run>/.
set -euo pipefail
for mode in HardAtt HardAttRewardShaping; do
  python main.py --mode=$mode --epochs 40 --lr_schedule plateau --locator_hidden 0 --std 0.05 --lr_patience 4 --train_patience 40
  python main.py --mode=$mode --epochs 40 --lr_schedule plateau --locator_hidden 0 --std 0.05 --lr_patience 4 --train_patience 40 --is_train=False
done
python main.py --compare ram_6_8x8_1_1_mnist_HardAtt ram_6_8x8_1_1_mnist_HardAttRewardShaping
