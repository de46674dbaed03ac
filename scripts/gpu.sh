#!/usr/bin/env bash
# The prepared accelerator run (experiments/gpu.py; `--help` for its steps and flags). On the GPU
# machine it runs from the source tree with the Python there (JAX with CUDA installed); here, with
# `--scale smoke`, it rehearses the same code on the CPU in the project's virtual environment.
#   bash scripts/gpu.sh --scale smoke --out outputs/gpu_smoke     # rehearsal here
#   bash scripts/gpu.sh --out "$OUT"                              # on the device
#   bash scripts/gpu.sh bundle                                    # the data that travels (device_carry/data)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" experiments/gpu.py "$@"
