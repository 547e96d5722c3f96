#!/usr/bin/env bash
# The performance issue's GPU measurements, as steps that each fit one device call (< 10 min on
# one H100). CI never runs this: it needs a CUDA device.
#
# On this (CPU) machine, once:   bash benchmarks/gpu_suite.sh prepare
#   (writes data/mnist/*.gz, 11 MB, from the md5-verified cache of `lca-data fetch mnist`)
# On the device machine, carrying data/:
#   bash benchmarks/gpu_suite.sh engine      # floor ratio, per-class, naive, adaptive: resnet20
#   bash benchmarks/gpu_suite.sh precision   # per-parameter error vs float64, both layouts
#   bash benchmarks/gpu_suite.sh profile     # where an iteration's time goes
#   bash benchmarks/gpu_suite.sh approx      # issue 17's error table: resnet20, 10k images
#   bash benchmarks/gpu_suite.sh lastlayer [--only regular fc_frozen ...]
#                                            # last-layer experiments, 10k images, 200 iterations
#                                            # (~3 min per run; 6 settings x 3 seeds:
#                                            #  one --seeds N per call, --only to split)
# Results land in $OUT (the device tool copies that folder back) or ./gpu_results.
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: gpu_suite.sh prepare|engine|precision|profile|approx|lastlayer}"
out="${OUT:-gpu_results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the device image has torch, h5py, tqdm
data=(--dataset mnist --data-root data/mnist --rgb32)
log() { tee -a "$out/$step.log"; }

case "$step" in
  prepare)
    src="${XDG_CACHE_HOME:-$HOME/.cache}/lca-explorer/data/mnist"
    mkdir -p data/mnist
    for f in "$src"/*-ubyte; do gzip -c "$f" > "data/mnist/$(basename "$f").gz"; done
    du -sh data/mnist ;;
  engine)
    nvidia-smi --query-gpu=name,driver_version --format=csv | log
    python benchmarks/bench_engine.py --net resnet20 "${data[@]}" --device cuda --iters 20 \
      --repeats 5 --chunk-size 1000 --skip adaptive 2>&1 | log ;;
  precision)
    for extra in "--memory-format contiguous" "--memory-format channels_last" "--compile"; do
      # shellcheck disable=SC2086  # $extra is two words on purpose
      python -m compute.cli --net resnet20 "${data[@]}" --device cuda --lr 0.1 --iters 3 \
        --chunk-size 1000 $extra --precision-check 2>&1 | log
    done
    python benchmarks/bench_engine.py --net resnet20 "${data[@]}" --device cuda --iters 20 \
      --repeats 5 --chunk-size 1000 --skip perclass,adaptive,naive --compile 2>&1 | log ;;
  profile)
    python benchmarks/profile_engine.py --net resnet20 "${data[@]}" --device cuda --iters 20 \
      --chunk-size 1000 2>&1 | log ;;
  approx)
    python benchmarks/bench_approx.py --net resnet20 "${data[@]}" --device cuda --iters 100 \
      --train-size 10000 --lr 0.1 --chunk-size 1000 --json "$out/approx_resnet20.json" \
      2>&1 | log ;;
  lastlayer)
    python scripts/make_last_layer_runs.py --device cuda --train-size 10000 --iters 200 \
      --out "$out/last_layer" "${@:2}" 2>&1 | log ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
