"""Where XLA's CPU time goes in the SDN backbones: one convolution layer, JAX against PyTorch.

    .venv/bin/python benchmarks/bench_conv.py                 # XLA (JAX), every layer kind
    .venv-torch/bin/python benchmarks/bench_conv.py --torch   # the same layers in eager PyTorch

Layers of the width-1/4 networks at batch 128, NHWC in JAX and NCHW in PyTorch (each framework's native
layout): a 3x3 convolution 16 -> 16 channels at 32x32 (VGG16 / ResNet56's first stage), 64 -> 64 at 8x8
(their late stages), and MobileNet's 3x3 depthwise convolution on 64 channels at 16x16; each timed
forward alone and forward + backward (gradients of the input and the weights, what training runs).
Prints one line per layer and writes benchmarks/results/conv[-torch]-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import results_file
from timing import median_seconds

# (name, batch, size, in channels, out channels, groups)
LAYERS = (
    ("conv3x3 16->16 @32x32", 128, 32, 16, 16, 1),
    ("conv3x3 64->64 @8x8", 128, 8, 64, 64, 1),
    ("depthwise3x3 64 @16x16", 128, 16, 64, 64, 64),
)


def _median_ms(fn, repeats: int) -> float:
    return 1e3 * median_seconds(fn, repeats, warmup=1)  # the warm-up call compiles


def jax_layer(batch, size, cin, cout, groups, repeats):
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, cin // groups, cout), np.float32))

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups
        )

    forward = jax.jit(conv)
    backward = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
    return (
        _median_ms(lambda: forward(x, w).block_until_ready(), repeats),
        _median_ms(lambda: jax.block_until_ready(backward(x, w)), repeats),
    )


def torch_layer(batch, size, cin, cout, groups, repeats):
    import torch

    x = torch.randn(batch, cin, size, size, requires_grad=True)
    layer = torch.nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False)

    def forward():
        with torch.no_grad():
            layer(x)

    def backward():
        (layer(x) ** 2).sum().backward()

    return _median_ms(forward, repeats), _median_ms(backward, repeats)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--torch", action="store_true", help="time eager PyTorch instead of JAX")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="override every layer's batch")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    run = torch_layer if args.torch else jax_layer
    rows = []
    for name, batch, size, cin, cout, groups in LAYERS:
        batch = args.batch or batch
        fwd, fwd_bwd = run(batch, size, cin, cout, groups, args.repeats)
        rows.append({"layer": name, "batch": batch, "forward_ms": fwd, "forward_backward_ms": fwd_bwd})
        print(f"{name} b{batch}: forward {fwd:.2f} ms, forward + backward {fwd_bwd:.2f} ms", flush=True)
    if args.torch:
        import torch

        machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    else:
        import jax

        machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__}"
    results_file.write("conv-torch" if args.torch else "conv", machine, args.out, rows=rows)
    return rows


if __name__ == "__main__":
    main()
