#!/usr/bin/env bash
# HardAtt vs HardAttRewardShaping on 60x60 cluttered MNIST (12x12 retina, 3 scales):
# same seed, same epochs, with the defaults of then (before 2026-11-29: plateau lr, linear
# location network, std 0.05). Run from the repository root.
set -euo pipefail
for mode in HardAtt HardAttRewardShaping; do
  python main.py --data_type cluttered --mode=$mode --epochs 20 --lr_schedule plateau --locator_hidden 0 --std 0.05 --lr_patience 4 --train_patience 20
  python main.py --data_type cluttered --mode=$mode --epochs 20 --lr_schedule plateau --locator_hidden 0 --std 0.05 --lr_patience 4 --train_patience 20 --is_train=False
done
python main.py --compare ram_6_12x12_3_2_cluttered_HardAtt ram_6_12x12_3_2_cluttered_HardAttRewardShaping
