#!/bin/bash
# 1 process x 2 threads vs 2 processes x 1 thread (torchrun, gloo), one MNIST epoch each, interleaved.
# Usage: bash benchmarks/ddp_speed.sh   (writes only under /tmp/bench; the rate is read from the last training bar)
cd "$(dirname "$0")/.."
mkdir -p /tmp/bench
D="--ckpt_dir /tmp/bench/ckpt --logs_dir /tmp/bench/logs --plot_dir /tmp/bench/plots --report_dir /tmp/bench/report --plot_freq 0 --epochs 1"
for i in 1 2; do
  rm -rf /tmp/bench/ckpt /tmp/bench/logs
  OMP_NUM_THREADS=2 python main.py $D --run_name one_$i > /tmp/bench/one_$i.log 2>&1
  rm -rf /tmp/bench/ckpt /tmp/bench/logs
  OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 main.py $D --run_name two_$i > /tmp/bench/two_$i.log 2>&1
done
for f in /tmp/bench/one_*.log /tmp/bench/two_*.log; do
  echo "$f $(tr '\r' '\n' < $f | grep -E "^epoch 1:" | tail -1)"
done
