#!/usr/bin/env bash
# The README's main command: set-up, then the CPU-sized demo. Extra arguments go to `mexjax demo`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
exec .venv/bin/python -m mexjax demo "$@"
