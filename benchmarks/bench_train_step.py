"""Where one SDN training step spends its time on this machine, piece by piece (XLA, and PyTorch beside it).

    .venv/bin/python benchmarks/bench_train_step.py [--archs vgg16 resnet56 mobilenet] [--widths 0.25]
        [--batches 128] [--steps 5]
    bash scripts/torch_reference.sh --breakdown [--archs ...]   # the same pieces in eager PyTorch

Per (arch, width, batch), on random weights with 10 classes and the reference exit count, median of
`--steps` calls after a compiling call, each piece jit-compiled on its own:
- forward: the training-mode forward pass and the SDN loss (batch statistics, dropout), no gradient;
- forward + backward: the same with the gradient of every parameter (what training differentiates);
- step: the library's whole train step (`train.make_train_step`: augmentation, gradient, SGD update);
- augment: the random crop and flip alone; update: the optimizer's update and its application alone;
- eval: the inference forward pass to every exit (running averages), what evaluation and the oracle run;
- the same forward + backward and eval with every batch norm removed (an upper bound of what folding
  batch norm into the convolutions at inference, or fusing it in training, could save);
- backward / forward: the cost of the gradient relative to the forward pass (PyTorch: about 2).
Writes benchmarks/results/train-step-<host>-<date>.json; the PyTorch run writes torch-breakdown-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform

import bench_nets
import jax
import jax.numpy as jnp
import numpy as np
import optax
import results_file
from timing import median_seconds

from mexjax import data, nets, train
from mexjax.nets import _layers


@contextlib.contextmanager
def without_batch_norm():
    """Build networks whose batch norms are the identity (only for this measurement)."""
    original = _layers._bn

    def identity(train, dtype, name=None):
        del train, dtype, name
        return lambda y: y

    _layers._bn = identity
    try:
        yield
    finally:
        _layers._bn = original


def _median_ms(fn, steps: int) -> float:
    jax.block_until_ready(fn())  # compile
    return 1e3 * median_seconds(lambda: jax.block_until_ready(fn()), steps)


def _pieces(arch: str, width: float, batch: int, steps: int) -> dict:
    """forward / forward + backward / eval of one net, built under the current batch-norm setting.

    The module is initialised and applied directly (not through `net.init` / `net.logits`, whose
    compiled programs are shared by every net of an equal spec and would bring batch norm back)."""
    num_exits = 6 if arch == "mobilenet" else 7
    net = nets.build(arch, num_classes=10, num_exits=num_exits, width=width)
    dummy = jnp.zeros((1, *net.input_shape), jnp.float32)
    variables = dict(net.module.init({"params": jax.random.key(0)}, dummy, train=False))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((batch, 32, 32, 3), np.float32))
    labels = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
    weights = jnp.asarray(train.loss_weights(train.TrainConfig(epochs=1), 0, num_exits))
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    rngs = {"dropout": jax.random.key(1)}

    def loss(params):
        logits, _ = net.module.apply(
            {"params": params, **rest}, x, train=True, rngs=rngs, mutable=["batch_stats"]
        )
        return jnp.mean(train.default_loss(logits, labels, {}, weights))

    forward = jax.jit(loss)
    grad = jax.jit(jax.grad(loss))
    evaluate = jax.jit(lambda variables, x: net.module.apply(variables, x, train=False))
    return {
        "forward_ms": _median_ms(lambda: forward(params), steps),
        "forward_backward_ms": _median_ms(lambda: grad(params), steps),
        "eval_ms": _median_ms(lambda: evaluate(variables, x), steps),
        "net": net,
        "variables": variables,
        "num_exits": num_exits,
    }


def bench(arch: str, width: float, batch: int, steps: int) -> dict:
    pieces = _pieces(arch, width, batch, steps)
    net, variables, num_exits = pieces.pop("net"), pieces.pop("variables"), pieces.pop("num_exits")
    with without_batch_norm():
        plain = _pieces(arch, width, batch, steps)

    config = train.TrainConfig(epochs=1, batch_size=batch)
    tx, state = bench_nets.train_state(config, variables)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
    weights = jnp.asarray(train.loss_weights(config, 0, num_exits))
    key = jax.random.key(1)
    step = jax.jit(train.make_train_step(net, tx, config))  # no donation: the same state every call
    augment = jax.jit(lambda k, im: data.augment(k, im, pad=config.crop_pad, flip=config.flip))
    grads = jax.tree_util.tree_map(jnp.ones_like, variables["params"])

    @jax.jit
    def update(params, opt_state, grads):
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    flops = nets.exit_flops(net)[-1] * batch  # forward multiply-adds x 2 of the whole batch
    row = {
        "arch": arch,
        "width": width,
        "batch": batch,
        **pieces,
        "step_ms": _median_ms(lambda: step(state, images, labels, {}, weights, key), steps),
        "augment_ms": _median_ms(lambda: augment(key, images), steps),
        "update_ms": _median_ms(lambda: update(state.params, state.opt_state, grads), steps),
        "no_bn_forward_backward_ms": plain["forward_backward_ms"],
        "no_bn_eval_ms": plain["eval_ms"],
        "forward_gflop_s": flops / pieces["forward_ms"] / 1e6,
    }
    row["backward_over_forward"] = (row["forward_backward_ms"] - row["forward_ms"]) / row["forward_ms"]
    row["train_img_s"] = batch / row["step_ms"] * 1e3
    return row


def line(row: dict) -> str:
    return (
        f"| {row['arch']} w{row['width']:g} b{row['batch']} | forward {row['forward_ms']:.1f} | "
        f"fwd+bwd {row['forward_backward_ms']:.1f} (bwd/fwd {row['backward_over_forward']:.2f}) | "
        f"step {row['step_ms']:.1f} (augment {row['augment_ms']:.2f}, update {row['update_ms']:.2f}) | "
        f"eval {row['eval_ms']:.1f} | no BN: fwd+bwd {row['no_bn_forward_backward_ms']:.1f}, "
        f"eval {row['no_bn_eval_ms']:.1f} | {row['forward_gflop_s']:.1f} GFLOP/s forward |"
    )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=list(nets.ARCHS))
    parser.add_argument("--widths", nargs="+", type=float, default=[0.25])
    parser.add_argument("--batches", nargs="+", type=int, default=[128])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    machine = f"{platform.machine()} {jax.devices()[0].device_kind}, JAX {jax.__version__}"
    print(f"# {machine}, {datetime.date.today()}; milliseconds per call, median of {args.steps}")
    rows = []
    for arch in args.archs:
        for width in args.widths:
            for batch in args.batches:
                rows.append(bench(arch, width, batch, args.steps))
                print(line(rows[-1]), flush=True)
    results_file.write("train-step", machine, args.out, rows=rows)
    return rows


if __name__ == "__main__":
    main()
