"""Benchmark the multi-exit networks: training, all-exits evaluation, batched early exit, batch-1 latency.

    .venv/bin/python benchmarks/bench_nets.py [--archs vgg16 resnet56 mobilenet] [--widths 1.0 0.25]
        [--batch 128] [--steps 5] [--out benchmarks/results/nets-<machine>.json]

Per (arch, width), with 10 classes and the reference exit count (7; MobileNet 6), on random weights:
- train img/s: the jit-compiled SDN train step (augmentation included), median of `--steps` steps;
- eval img/s: all exits at once on a batch (the plain jitted forward pass);
- early-exit img/s: the batched early-exit path (ExitRunner, tile 8) at thresholds that send an equal
  share of samples to every exit (random weights have no meaningful confidences, so the thresholds are
  set from quantiles of the confidences to fix the exit distribution), and its ratio to eval img/s;
- batch-1 latency per exit: median wall time of running the stages up to each exit on one image.
Prints Markdown rows for docs/benchmarks.md and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import platform

import jax
import jax.numpy as jnp
import numpy as np
import results_file
from timing import median_seconds

from mexjax import exits, nets, train


def median_time(fn, repeats):
    """Median wall time of `fn()` (blocking on its JAX result) over `repeats` calls."""
    return median_seconds(lambda: jax.block_until_ready(fn()), repeats)


def equal_share_thresholds(conf: np.ndarray) -> np.ndarray:
    """Thresholds on conf [K, N] so that about N/K samples leave at every exit."""
    k, n = conf.shape
    remaining = np.ones(n, bool)
    thresholds = []
    for i in range(k - 1):
        share = 1.0 / (k - i)  # of the samples still running
        t = float(np.quantile(conf[i][remaining], 1 - share)) if remaining.any() else 1.0
        thresholds.append(t)
        remaining &= conf[i] < t
    return np.array(thresholds, np.float32)


def batch1_latency(net, variables, one, repeats: int) -> list[float]:
    """Median ms of running the stages up to each exit on one image (compiled before timing)."""
    latency = []
    for upto in range(net.num_exits):

        def run(upto=upto):
            h = one
            for i in range(upto + 1):
                h, logits = net.stage(i)(variables, h)
            return logits

        run()
        latency.append(median_time(run, repeats) * 1e3)
    return latency


def train_state(config, variables):
    """(optimizer, fresh TrainState) for timing the train step on a copy of `variables` (the step may
    donate its state)."""
    tx = train.make_optimizer(config, 100, variables["params"])
    fresh = jax.tree_util.tree_map(jnp.copy, variables)
    state = train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=fresh["params"],
        batch_stats=fresh["batch_stats"],
        opt_state=tx.init(fresh["params"]),
        fixed={k: v for k, v in fresh.items() if k not in ("params", "batch_stats")},
    )
    return tx, state


def bench(arch: str, width: float, batch: int, steps: int, dtype: str = "float32") -> dict:
    num_exits = 6 if arch == "mobilenet" else 7
    net = nets.build(arch, num_classes=10, num_exits=num_exits, width=width, dtype=dtype)
    variables = net.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch).astype(np.int32)

    config = train.TrainConfig(epochs=1, batch_size=batch)
    tx, state = train_state(config, variables)
    step = jax.jit(train.make_train_step(net, tx, config), donate_argnums=0)
    weights = jnp.asarray(train.loss_weights(config, 0, num_exits))
    xb, yb, key = jnp.asarray(images), jnp.asarray(labels), jax.random.key(1)
    state, _ = step(state, xb, yb, {}, weights, key)  # compile
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], xb, yb, {}, weights, key)
        return metrics

    train_s = median_time(one_step, steps)

    x = jnp.asarray(images.astype(np.float32) / 255.0)
    net.logits(variables, x)
    eval_s = median_time(lambda: net.logits(variables, x), steps)

    runner = exits.ExitRunner(
        tuple(net.stage(i) for i in range(num_exits)), tile=8, buckets=(8, 16, 32, 64, 128)
    )
    conf = np.asarray(exits.confidence(runner.all_exits(variables, x)))
    thresholds = equal_share_thresholds(conf)
    runner.warmup(variables, x[:1], max_batch=batch)
    runner.early_exit_batched(variables, x, thresholds)
    ee_s = median_time(lambda: runner.early_exit_batched(variables, x, thresholds)[0], steps)
    exit_hist = np.bincount(runner.early_exit_batched(variables, x, thresholds)[0], minlength=num_exits)

    latency = batch1_latency(net, variables, x[:1], max(steps * 4, 20))
    return {
        "arch": arch,
        "width": width,
        "batch": batch,
        "dtype": dtype,
        "train_img_s": batch / train_s,
        "eval_img_s": batch / eval_s,
        "early_exit_img_s": batch / ee_s,
        "early_exit_over_eval": eval_s / ee_s,
        "early_exit_histogram": exit_hist.tolist(),
        "batch1_latency_ms": latency,
        "full_gflops": nets.exit_flops(net)[-1] / 1e9,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=list(nets.ARCHS))
    parser.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.25])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    machine = (
        f"{platform.machine()} {device.device_kind} ({jax.device_count()} device), JAX {jax.__version__}"
    )
    rows = []
    for arch in args.archs:
        for width in args.widths:
            result = bench(arch, width, args.batch, args.steps, args.dtype)
            rows.append(result)
            lat = result["batch1_latency_ms"]
            print(
                f"| {arch} w{width:g} b{args.batch} {args.dtype} | {machine} | {datetime.date.today()} | "
                f"`benchmarks/bench_nets.py --archs {arch} --widths {width:g}` | "
                f"train {result['train_img_s']:.0f} img/s; eval {result['eval_img_s']:.0f} img/s; "
                f"early exit {result['early_exit_img_s']:.0f} img/s; batch-1 first/full "
                f"{lat[0]:.2f}/{lat[-1]:.2f} ms | eval all exits {result['eval_img_s']:.0f} img/s | "
                f"early exit / eval = {result['early_exit_over_eval']:.2f}x |",
                flush=True,
            )
    results_file.write("nets", machine, args.out, rows=rows)
    return rows


if __name__ == "__main__":
    main()
