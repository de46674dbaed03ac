#!/usr/bin/env bash
# The PyTorch eager reference of the CPU benchmarks, in its own environment (.venv-torch, git-ignored):
# sets it up on first use (CPU-only torch, the version of the recorded reference), then runs
# benchmarks/torch_reference.py with the given arguments (e.g. --archs vgg16 --widths 0.25, or
# --deepsloth). It writes benchmarks/results/torch-<host>-<date>.json; then
#   .venv/bin/python benchmarks/bench_xla_flags.py --options default --widths 1 0.25
# prints mexjax's figures beside it as ratios (the newest torch-*.json is the reference).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if ! .venv-torch/bin/python -c "import torch, numpy" 2>/dev/null; then
  echo "[torch] setting up .venv-torch (torch $TORCH_VERSION, CPU only)"
  python3 -m venv .venv-torch
  .venv-torch/bin/pip install -q --upgrade pip
  # the CPU-only wheel (no CUDA libraries): from the package index as +cpu, else from PyTorch's CPU index
  .venv-torch/bin/pip install -q numpy "torch==$TORCH_VERSION+cpu" \
    || .venv-torch/bin/pip install -q numpy "torch==$TORCH_VERSION" --extra-index-url https://download.pytorch.org/whl/cpu
fi
exec .venv-torch/bin/python benchmarks/torch_reference.py "$@"
