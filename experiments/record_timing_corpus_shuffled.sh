#!/usr/bin/env bash
# Records the third part of the timing corpus: passes timed in a fresh random order each (the oracle's
# `measurement_order`, kept as `pass_order`), for the victims in outputs/corpus/ (trained by
# record_timing_corpus.sh) under the global thresholds of record_timing_corpus_spread.sh, 10 passes.
# Quiet sets first: run it on a machine doing nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
P=.venv/bin/python
V=outputs/corpus
rec() { $P experiments/timing_corpus.py record --n 2000 --passes 10 --victim "$V/$1" --threshold "$2" --queries "$3" --load "$4"; }
for load in ${LOADS:-quiet one}; do
  rec vgg16_fmnist_w025_k6 0.5 tinyimagenet "$load"
  rec vgg16_cifar10_w025_k6_weak 0.3 tinyimagenet "$load"
  rec mobilenet_cifar10_w05_k4 0.3 test "$load"
  rec vgg16_cifar10_w05_k3 0.3 tinyimagenet "$load"
done
