"""Benchmark the extraction attacks and output defenses on this machine.

    .venv/bin/python benchmarks/bench_extraction.py [--arch resnet56] [--width 0.25] [--iterations 4]
        [--out benchmarks/results/extraction-<machine>.json]

- DFME and MAZE: queries per second of the whole attack loop (generator, zeroth-order probes, student
  updates, the victim's answers) against a random-weight SDN victim (CIFAR-sized, 7 exits, thresholds
  that send a share of queries to every exit), student of the same backbone, the papers' batch sizes
  (DFME 256 x (1 + 1 + 5) = 1,792 queries per iteration; MAZE 128 x (1 + 10 + 4) = 1,920), measured
  from the end of the first iteration (which compiles) to the end of the last; beside it the queries
  per second of the victim alone answering the same batches (the bound the attack cannot beat), and
  the projection for 20 M queries.
- Output defenses: the victim's answer time for a batch of 256 with reverse sigmoid / DCP vs none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import jax
import numpy as np
import results_file

from mexjax import defenses, exits, nets, oracle
from mexjax.attacks import steal


def _victim(arch, width):
    net = nets.build(arch, num_classes=10, num_exits=7, width=width)
    variables = net.init(jax.random.key(0))
    probe = np.random.default_rng(0).random((256, *net.input_shape), dtype=np.float32)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, probe)))
    thresholds = np.array([np.quantile(c, 0.85) for c in conf[:-1]], np.float32)
    return net, variables, thresholds


def _oracle(net, variables, thresholds, budget, defense=None):
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-12)
    return oracle.Oracle(net, variables, thresholds, budget=budget, timing=timing, defense=defense)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet56")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--methods", nargs="+", default=["dfme", "maze"], choices=["dfme", "maze"])
    parser.add_argument(
        "--batch-size", type=int, default=None, help="generator batch (default: each method's)"
    )
    parser.add_argument(
        "--answer-batch", type=int, default=256, help="images per answer when timing the output defenses"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    net, variables, thresholds = _victim(args.arch, args.width)
    rows = []
    for method in args.methods:
        config = steal.DataFreeConfig() if method == "dfme" else steal.datafree.maze_config()
        if args.batch_size is not None:
            config = dataclasses.replace(config, batch_size=args.batch_size)
        budget = config.queries_per_iteration * (args.iterations + 1)
        victim = _oracle(net, variables, thresholds, budget)
        student = nets.build(args.arch, num_classes=10, num_exits=2, width=args.width)
        started = time.perf_counter()
        result = steal.datafree.data_free(victim, student, config, progress=False)
        total = time.perf_counter() - started
        # steady state: from the end of the first iteration (which compiles) to the end of the last
        first, last = result.history[0], result.history[-1]
        qps_run = (last["queries"] - first["queries"]) / (last["seconds"] - first["seconds"])
        batches = [np.random.default_rng(i).random((config.batch_size, *net.input_shape), dtype=np.float32)
                   for i in range(4)]  # fmt: skip
        alone = _oracle(net, variables, thresholds, 10**9)
        alone.query(batches[0], timed=False)
        start = time.perf_counter()
        for b in batches:
            alone.query(b, timed=False)
        victim_qps = 4 * config.batch_size / (time.perf_counter() - start)
        rows.append({
            "what": f"{method} queries/s", "method": method, "iterations": result.iterations,
            "queries": result.queries_used, "seconds": total, "first_iteration_seconds": first["seconds"],
            "queries_per_second": qps_run,
            "victim_alone_queries_per_second": victim_qps,
            "projected_hours_for_20M": 20e6 / qps_run / 3600,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    batch = np.random.default_rng(9).random((args.answer_batch, *net.input_shape), dtype=np.float32)
    for name, defense in (("none", None), ("reverse sigmoid", defenses.reverse_sigmoid()),
                          ("DCP", defenses.dcp())):  # fmt: skip
        guarded = _oracle(net, variables, thresholds, 10**9, defense)
        guarded.query(batch, timed=False)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            guarded.query(batch, timed=False)
            times.append(time.perf_counter() - start)
        rows.append({"what": f"answer {args.answer_batch} images, defense {name}",
                     "seconds": statistics.median(times)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    device = jax.devices()[0]
    machine = (
        f"{platform.machine()}, {jax.local_device_count()} x {device.device_kind}, JAX {jax.__version__}"
    )
    results_file.write("extraction", machine, args.out, arch=args.arch, width=args.width, rows=rows)


if __name__ == "__main__":
    main()
