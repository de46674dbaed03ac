#!/usr/bin/env bash
# Records the timing corpus in experiments/results/timing_corpus/ (about 40 minutes on 2 cores):
# trains six small victims (VGG16 / ResNet56 / MobileNet SDN, width 1/4 and 1/2, 3-7 exits, weak and
# better trained; outputs/corpus/, not kept), then times TinyImageNet queries and the victim's own
# test images, 10 passes each, quiet and with one or both cores kept busy. Run it on a machine that
# does nothing else: the quiet sets are only quiet if nothing else runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
P=.venv/bin/python
V=outputs/corpus
train() { [ -f "$V/$1/result.json" ] || $P -m mexjax train-victim --out "$V/$1" --quiet "${@:2}"; }
train vgg16_fmnist_w025_k6 --arch vgg16 --dataset fashion_mnist --exits 6 --width 0.25 --epochs 4 \
  --train-subset 20000 --held-out 2000 --threshold 0.9
train vgg16_cifar10_w025_k6_weak --arch vgg16 --dataset cifar10 --exits 6 --width 0.25 --epochs 1 \
  --train-subset 8000 --held-out 2000 --threshold 0.6
train resnet56_fmnist_w025_k6 --arch resnet56 --dataset fashion_mnist --exits 6 --width 0.25 --epochs 1 \
  --train-subset 8000 --held-out 2000 --threshold 0.8
train mobilenet_cifar10_w05_k4 --arch mobilenet --dataset cifar10 --exits 4 --width 0.5 --epochs 1 \
  --train-subset 8000 --held-out 2000 --threshold 0.5
train vgg16_cifar10_w05_k3 --arch vgg16 --dataset cifar10 --exits 3 --width 0.5 --epochs 1 \
  --train-subset 8000 --held-out 2000 --threshold 0.6
train resnet56_cifar10_w025_k7 --arch resnet56 --dataset cifar10 --exits 7 --width 0.25 --epochs 1 \
  --train-subset 8000 --held-out 2000 --threshold 0.5
rec() { $P experiments/timing_corpus.py record --n 2000 --passes 10 --victim "$V/$1" --queries "$2" --load "$3"; }
ALL="vgg16_fmnist_w025_k6 vgg16_cifar10_w025_k6_weak resnet56_fmnist_w025_k6 mobilenet_cifar10_w05_k4 vgg16_cifar10_w05_k3 resnet56_cifar10_w025_k7"
SOME="vgg16_fmnist_w025_k6 resnet56_fmnist_w025_k6 mobilenet_cifar10_w05_k4"
for v in $ALL; do rec "$v" tinyimagenet quiet; done
for v in $SOME; do rec "$v" test quiet; done
for v in $ALL; do rec "$v" tinyimagenet one; done
for v in $SOME; do rec "$v" test one; done
for v in $SOME; do rec "$v" tinyimagenet two; rec "$v" test two; done
