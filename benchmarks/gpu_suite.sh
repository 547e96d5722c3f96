#!/usr/bin/env bash
# The performance issue's GPU measurements, as steps that each fit one device call (< 10 min on
# one H100/H200; sized from the first H200 session, docs/benchmarks.md). CI never runs this: it
# needs a CUDA device.
#
# On this (CPU) machine, once:   bash benchmarks/gpu_suite.sh prepare
#   (writes data/mnist/*.gz, 11 MB, from the md5-verified cache of `lca-data fetch mnist`)
# On the device machine, carrying data/:
#   bash benchmarks/gpu_suite.sh engine      # floor ratio, per-class, naive, adaptive: resnet20
#   bash benchmarks/gpu_suite.sh precision   # per-parameter error vs float64, both layouts
#   bash benchmarks/gpu_suite.sh profile     # where an iteration's time goes
#   bash benchmarks/gpu_suite.sh approx      # issue 17's error table: resnet20, 10k images
#   bash benchmarks/gpu_suite.sh lastlayer [--seeds 0 1 2] [--only regular fc_frozen ...]
#                                            # last-layer experiments, 1,000 images, 150 iterations,
#                                            # into runs/last_layer (kept on a warm machine between
#                                            # calls); ~60 s per run on an H200, so one seed (6 runs)
#                                            # per call
#   bash benchmarks/gpu_suite.sh pack        # runs/last_layer -> $OUT, three bundles per .tar.xz
#   bash benchmarks/gpu_suite.sh defaults    # issue 25: resnet20 on 45,000 images, rk4: the new
#                                            # defaults (chunk auto, ghost BatchNorm groups of
#                                            # 1,000, layout auto, cudnn.benchmark) vs NCHW
#                                            # chunk 1,000 vs the plain floor, and the precision
#                                            # check of both layouts; sized for < 8 minutes
#   bash benchmarks/gpu_suite.sh overlap     # issue 25: the defaults with the record's host
#                                            # copies overlapped (pinned, side stream) vs made
#                                            # synchronously, resnet20 on 45,000 images, rk4;
#                                            # sized for < 5 minutes
# Results land in $OUT (the device tool copies that folder back) or ./gpu_results.
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: gpu_suite.sh prepare|engine|precision|profile|approx|lastlayer|pack|defaults|overlap}"
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
    # 55,000 images: ~2.3 s per full-dataset gradient on an H200 in strict fp32
    python benchmarks/bench_engine.py --net resnet20 "${data[@]}" --device cuda --iters 10 \
      --repeats 3 --chunk-size 1000 --skip adaptive 2>&1 | log ;;
  precision)
    tmp=$(mktemp -d)  # each check writes its own bundle (an existing --out is never replaced)
    i=0
    # 2,000 images: the float64 recomputation over all 55,000 took > 80 s per check on an H200
    for extra in "--memory-format contiguous" "--memory-format channels_last" "--compile" \
        "--allow-tf32" "--memory-format channels_last --allow-tf32"; do
      i=$((i + 1))
      # shellcheck disable=SC2086  # $extra is two words on purpose
      python -m compute.run.cli --net resnet20 "${data[@]}" --device cuda --lr 0.1 --iters 3 \
        --train-size 2000 --chunk-size 1000 $extra --precision-check --out "$tmp/check_$i.h5" \
        --no-progress 2>&1 | log
    done
    python benchmarks/bench_engine.py --net resnet20 "${data[@]}" --device cuda --iters 5 \
      --repeats 3 --train-size 10000 --chunk-size 1000 --skip perclass,adaptive,naive \
      --compile 2>&1 | log ;;
  profile)
    python benchmarks/profile_engine.py --net resnet20 "${data[@]}" --device cuda --iters 10 \
      --train-size 10000 --chunk-size 1000 2>&1 | log ;;
  approx)
    python benchmarks/bench_approx.py --net resnet20 "${data[@]}" --device cuda --iters 100 \
      --train-size 10000 --lr 0.1 --chunk-size 1000 --json "$out/approx_resnet20.json" \
      2>&1 | log ;;
  lastlayer)
    python scripts/make_last_layer_runs.py --device cuda --train-size 1000 --iters 150 \
      --chunk-size 1000 --lca-stride 1000 --out runs/last_layer "${@:2}" 2>&1 | log ;;
  pack)  # $OUT takes 8 files of <= 16 MiB: three bundles per .tar.xz (each ~2-3 MB packed)
    mapfile -t runs < <(cd runs && ls last_layer/*.h5)
    for ((i = 0; i < ${#runs[@]}; i += 3)); do
      tar -C runs -cJf "$out/last_layer_$((i / 3)).tar.xz" "${runs[@]:i:3}"
    done
    ls -la "$out" ;;
  defaults)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | log
    # one gradient of 45,000 images: ~1.9 s at NCHW chunk 1,000 (23,600 images/s, H200), so the
    # old column is ~4 s per iteration. Floor warm-up 3 chunks x 3 x 2 gradients (~30 s); 3 runs
    # (new, new in NCHW = --split, old), each set up with its automatic precision check on 2,000
    # images and a doubled first evaluation (~30 s each); 8 interleaved rounds (~10 s each);
    # the memory check (~30 s): ~4 minutes in all, 7 at most
    timeout 420 python benchmarks/bench_defaults.py --net resnet20 "${data[@]}" --device cuda \
      --train-size 45000 --iters 8 --old-chunk 1000 --no-per-class \
      --floor-chunks 1000,5000,15000 --split --memory --memory-budgets default 2>&1 | log \
      || echo "bench_defaults stopped (exit $?)" | log
    # the per-parameter precision of the layout the defaults pick, and of NCHW, vs float64
    for fmt in channels_last contiguous; do
      timeout 60 python -m compute.run.cli --net resnet20 "${data[@]}" --device cuda --lr 0.1 \
        --iters 3 --train-size 2000 --memory-format "$fmt" --precision-check --no-progress \
        2>&1 | log || echo "precision check $fmt stopped (exit $?)" | log
    done ;;
  overlap)
    nvidia-smi --query-gpu=name,driver_version --format=csv | log
    # floor warm-up at one chunk (~10 s); 3 runs (new, sync, old NCHW chunk 1,000), each set up
    # with its precision check and first evaluation (~30 s each); 8 rounds (~8 s each): ~3 min
    timeout 420 python benchmarks/bench_defaults.py --net resnet20 "${data[@]}" --device cuda \
      --train-size 45000 --iters 8 --old-chunk 1000 --no-per-class --floor-chunks 5000 \
      --sync-copies 2>&1 | log || echo "bench_defaults stopped (exit $?)" | log ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
