#!/usr/bin/env bash
# Records the second part of the timing corpus: the same victims (outputs/corpus/, trained by
# record_timing_corpus.sh) under one global confidence threshold chosen so that every exit receives a
# share of the queries (weak victims send almost every query to the last exit under their own
# thresholds, which leaves nothing to estimate). Quiet sets first: run it on a machine doing nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
P=.venv/bin/python
V=outputs/corpus
# ONLY="victim:queries ...": record just those rows, e.g. the shuffled-order sets of 2026-11-30:
# ONLY="vgg16_fmnist_w025_k6:tinyimagenet vgg16_cifar10_w025_k6_weak:tinyimagenet
#   mobilenet_cifar10_w05_k4:test vgg16_cifar10_w05_k3:tinyimagenet"
# (sets recorded since the oracle shuffles its timing passes are named *_shuffled and keep pass_order)
rec() {
  if [ -n "${ONLY:-}" ] && [[ " $(echo $ONLY) " != *" $1:$3 "* ]]; then return 0; fi
  $P experiments/timing_corpus.py record --n 2000 --passes 10 --victim "$V/$1" --threshold "$2" --queries "$3" --load "$4"
}
for load in ${LOADS:-quiet one}; do
  rec vgg16_fmnist_w025_k6 0.5 tinyimagenet "$load"
  rec vgg16_fmnist_w025_k6 0.7 test "$load"
  rec resnet56_fmnist_w025_k6 0.3 tinyimagenet "$load"
  rec resnet56_fmnist_w025_k6 0.5 test "$load"
  rec vgg16_cifar10_w025_k6_weak 0.3 tinyimagenet "$load"
  rec mobilenet_cifar10_w05_k4 0.3 test "$load"
  rec vgg16_cifar10_w05_k3 0.3 tinyimagenet "$load"
  rec resnet56_cifar10_w025_k7 0.5 test "$load"
done
