"""Load test of a served victim on loopback: requests/s and latency percentiles, beside the
in-process oracle's answers/s on the same victim.

    .venv/bin/python benchmarks/bench_serve.py [--checkpoint DIR] [--requests 400] [--time-limit 30]
        [--out benchmarks/results/serve-<machine>-<date>.json]

The victim (a saved model, default: the cpu-scale victim of experiments/serve.py when it exists, else
a random-weight 4-exit ResNet56 w0.25 saved to a temporary folder) is served by `python -m mexjax serve`
in a child process with no countermeasure. Load: one-image requests of random uint8 images, bounded in
count and time, from 1 and from 4 concurrent connections. Reference: `oracle.Oracle.query` answering
the same images one at a time in this process (real early exit, measured timing): what serving costs
on top of the network.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import exits, nets, oracle, serve

DEFAULT = Path("outputs/experiments/victims/cpu/serve_fashion_mnist_resnet56_k4/model")


def _random_victim(folder: Path) -> Path:
    net = nets.build("resnet56", num_classes=10, num_exits=4, width=0.25, input_shape=(32, 32, 1))
    variables = net.init(jax.random.key(0))
    probe = np.random.default_rng(0).integers(0, 256, (256, *net.input_shape), dtype=np.uint8)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, probe)))
    thresholds = np.array([np.quantile(c, 0.7) for c in conf[:-1]], np.float32)
    nets.save(folder / "model", net, variables, thresholds=thresholds)
    return folder / "model"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT
        if not checkpoint.exists():
            checkpoint = _random_victim(Path(tmp))
        net, variables, thresholds, _ = nets.load(checkpoint)
        images = np.random.default_rng(1).integers(0, 256, (200, *net.input_shape), dtype=np.uint8)
        local = oracle.Oracle(net, variables, thresholds, budget=10**9)
        local.query(images[:4])  # compile
        start = time.perf_counter()
        answers = local.query(images)
        reference = len(images) / (time.perf_counter() - start)
        del answers
        load = os.getloadavg()[0]
        budget = str(4 * args.requests)
        with serve.child_process(["--checkpoint", str(checkpoint), "--budget", budget]) as url:
            serve.load_test(url, images, requests=20, concurrency=1, client_id="warm")
            limit = args.time_limit
            runs = [
                serve.load_test(url, images, requests=args.requests, concurrency=c, time_limit=limit,
                                client_id=f"c{c}")
                for c in (1, 4)
            ]  # fmt: skip
    result = {
        "checkpoint": str(checkpoint),
        "in_process_answers_per_s": reference,
        "load_tests": runs,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, JAX {jax.__version__}, CPU only",
        "date": datetime.date.today().isoformat(),
    }
    for run in runs:
        print(
            f"| served victim, {run['concurrency']} connection(s): requests/s (p50 / p95 / p99 ms latency; "
            f"{run['answered']} requests) | {result['machine']} | {result['date']} | "
            f"`.venv/bin/python benchmarks/bench_serve.py` | {run['requests_per_s']:.0f} "
            f"({run['p50_ms']:.2f} / {run['p95_ms']:.2f} / {run['p99_ms']:.2f}) | {reference:.0f} "
            f"(in-process oracle, one image at a time) | {run['requests_per_s'] / reference:.2f}x |"
        )
    print(f"load average {result['load_before']} before, {result['load_after']} after")
    name = f"serve-{platform.node() or 'machine'}-{result['date']}.json"
    out = Path(args.out or Path("benchmarks/results") / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
