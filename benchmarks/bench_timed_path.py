"""Benchmark the timed batch-1 path that the oracle and the server run: before and after leaning it.

    .venv/bin/python benchmarks/bench_timed_path.py [--arch vgg16 --width 0.25 --exits 6 --runs 2000]

The victim is the demo's (VGG16-SDN, width 1/4, 6 exits, 32x32x1 inputs, random weights): no early
exit (every stage runs), batch 1, the same image each time. "jit dispatch" is the path as it was: each
stage a `jax.jit` function called with the variables pytree (cache lookup and pytree flattening per
call); "lean" is `ExitRunner.lean`: ahead-of-time compiled stages taking the weights flattened once.
Both read each stage's probabilities to the host once. The two are measured interleaved in blocks so
that background load hits both alike; prints median and the p10-p90 spread (ms) as Markdown rows.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import time

import jax
import numpy as np
from bench_kde_search import cpu_model  # benchmarks/ is on sys.path when this script runs

from mexjax import nets


def measure(arch="vgg16", width=0.25, num_exits=6, runs=2000, block=100, input_shape=(32, 32, 1)):
    net = nets.build(arch, num_classes=10, num_exits=num_exits, width=width, input_shape=input_shape)
    variables = net.init(jax.random.key(0))
    runner = net.runner(tile=1)
    row = np.random.default_rng(0).random((1, *input_shape)).astype(np.float32)
    never = np.full(num_exits - 1, np.inf, np.float32)  # no early exit: every stage runs
    lean = runner.lean(variables, row)
    paths = {
        "jit dispatch": lambda: runner.early_exit_unchecked(variables, row, never),
        "lean": lambda: lean(row, never),
    }
    a, b = paths["jit dispatch"](), paths["lean"]()
    if a[0] != b[0] or not np.array_equal(a[1], b[1]):
        raise AssertionError("the lean path must answer exactly as the jit path")
    for fn in paths.values():
        for _ in range(20):
            fn()
    times = {name: [] for name in paths}
    gc.disable()
    try:
        for _ in range(max(1, runs // block)):
            for name, fn in paths.items():
                for _ in range(block):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    out = {}
    for name, ts in times.items():
        ms = np.asarray(ts) * 1e3
        p10, p50, p90 = np.percentile(ms, [10, 50, 90])
        out[name] = {"median_ms": float(p50), "p10_ms": float(p10), "p90_ms": float(p90)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="vgg16")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--exits", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)
    result = measure(args.arch, args.width, args.exits, args.runs)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, JAX {jax.__version__}, load {os.getloadavg()[0]:.1f}"
    date = datetime.date.today().isoformat()
    before, after = result["jit dispatch"], result["lean"]
    print(
        f"| {args.arch} SDN w{args.width}, {args.exits} exits: batch-1 full network, median (p10-p90) ms "
        f"| {machine} | {date} | `.venv/bin/python benchmarks/bench_timed_path.py` "
        f"| lean: {after['median_ms']:.2f} ({after['p10_ms']:.2f}-{after['p90_ms']:.2f}) "
        f"| jit dispatch: {before['median_ms']:.2f} ({before['p10_ms']:.2f}-{before['p90_ms']:.2f}) "
        f"| {before['median_ms'] / after['median_ms']:.2f}x faster |"
    )
    return result


if __name__ == "__main__":
    main()
