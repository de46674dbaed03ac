#!/usr/bin/env bash
# Train the demo's committed victim (resumable: a rerun continues a cut run) and copy it into
# assets/ with result.json, model/ (with the sha256 of every file, checked on load) and command.txt
# (the exact command below). About an hour on a quiet 2-core CPU. With `--student` it also pre-trains
# a student backbone on TinyImageNet (not committed: at this size it made our student worse, see
# the README) into assets/students/, for `mexjax demo --pretrained assets/students/...`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh

victim=(train-victim --arch vgg16 --dataset cifar10 --exits 4 --width 0.25 --epochs 20 --lr 0.05
        --held-out 5000 --seed 0 --out outputs/victims/vgg16_cifar10_w025_k4 --quiet)
student=(train-victim --arch vgg16 --dataset tinyimagenet --exits 4 --width 0.25 --input-size 32
         --epochs 4 --recipe adam --lr 0.001 --held-out 1000 --seed 0
         --out outputs/pretrained/vgg16_tinyimagenet_w025_s32 --quiet)

copy() {  # copy <trained folder> <assets folder> <command...>
  local from=$1 to=$2
  shift 2
  rm -rf "$to"
  mkdir -p "$to"
  cp -r "$from/model" "$from/result.json" "$to/"
  [ -f "$from/exits.png" ] && cp "$from/exits.png" "$to/"
  echo "python -m mexjax $*" > "$to/command.txt"
}

.venv/bin/python -m mexjax "${victim[@]}"
copy outputs/victims/vgg16_cifar10_w025_k4 assets/victims/vgg16_cifar10_w025_k4 "${victim[@]}"
if [ "${1:-}" = "--student" ]; then
  .venv/bin/python -m mexjax "${student[@]}"
  copy outputs/pretrained/vgg16_tinyimagenet_w025_s32 assets/students/vgg16_tinyimagenet_w025_s32 "${student[@]}"
fi
du -sh assets/*/*
