"""Benchmark DeepSloth: images/s of the 30-step L∞ PGD attack (white box, jit-compiled chunks).

    .venv/bin/python benchmarks/bench_slowdown.py [--archs resnet56 vgg16] [--widths 0.25 1.0]
        [--batch 64] [--steps 30] [--repeats 3] [--out benchmarks/results/slowdown-<machine>.json]

Per (arch, width), 10 classes, 7 exits, random weights, CIFAR-sized random images: the median wall time
of `slowdown.attack` on one batch over `--repeats` runs after a compiling run. The PyTorch reference of
the same attack is `benchmarks/torch_reference.py --deepsloth` (eager mode, the way DeepSloth's
reference code runs). Prints Markdown-ready numbers and writes the raw ones as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import numpy as np
import results_file

from mexjax import nets
from mexjax.attacks import slowdown


def bench(arch: str, width: float, batch: int, steps: int, repeats: int) -> dict:
    net = nets.build(arch, num_classes=10, num_exits=7, width=width)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).random((batch, *net.input_shape), dtype=np.float32)
    config = slowdown.SlothConfig(steps=steps, batch_size=batch)
    started = time.perf_counter()
    slowdown.attack(net, variables, images, config, progress=False)  # compiles
    compile_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        slowdown.attack(net, variables, images, config, progress=False)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "arch": arch, "width": width, "batch": batch, "steps": steps, "img_s": batch / seconds,
        "seconds": seconds, "first_call_s": compile_s,
    }  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["resnet56", "vgg16"])
    parser.add_argument("--widths", nargs="+", type=float, default=[0.25, 1.0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    machine = (
        f"{platform.machine()}, {jax.local_device_count()} x {device.device_kind}, JAX {jax.__version__}"
    )
    rows = []
    for arch in args.archs:
        for width in args.widths:
            row = bench(arch, width, args.batch, args.steps, args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    results_file.write("slowdown", machine, args.out, rows=rows)


if __name__ == "__main__":
    main()
