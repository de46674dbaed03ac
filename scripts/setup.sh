#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands: a virtual environment in .venv with mexjax
# installed (editable, with the dev tools), and the FashionMNIST Debian package when it is missing.
# The second run only compares a stamp and returns in well under a second.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  if command -v python3.11 >/dev/null 2>&1; then python_bin=python3.11; else python_bin=python3; fi
fi
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "mexjax needs Python >= 3.11; $python_bin is $("$python_bin" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi

extras=${MEXJAX_EXTRAS:-dev}
stamp=.venv/.mexjax-install-stamp
want="$(sha256sum pyproject.toml | cut -c1-64) extras=$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing mexjax[$extras] into .venv (first run: about a minute)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
  echo "$want" > "$stamp"
fi

fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fmnist" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing the Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "[setup] installing the Debian package dataset-fashion-mnist (sudo)"
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] warning: FashionMNIST is missing and cannot be installed here (not root)." >&2
    echo "        Install it with: sudo apt-get install dataset-fashion-mnist" >&2
  fi
fi
