"""Fake quantization of a multi-exit network: int-b weights and activations simulated in float.

Weights: symmetric, one scale per output channel (the last kernel axis), scale = max|w| / (2^(b-1) - 1).
Activations: asymmetric, one (scale, zero point) per tensor, from a range [lo, hi] observed on
calibration images; the input of every convolution and dense layer is quantized (the network's own
input normalization included). Batch norm and biases stay in float: a deployed int8 model folds batch
norm into the preceding convolution, which changes no rounding that matters to the defenses here.

Rounding uses the straight-through estimator: the forward pass rounds, the backward pass treats
rounding as the identity inside the representable range and as zero outside it (clipped STE), so a
quantized net can be fine-tuned (QAT) with ordinary gradients.

A quantized net is a `MultiExitNet` whose spec carries the bit widths; its activation ranges live in
the variables' "quant" collection (shaped like "params": an f32[2] = (lo, hi) per layer), written by
`calibrate`, saved and
loaded with the other variables, and carried unchanged through training.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MIN_BITS, MAX_BITS = 2, 16


def check_bits(bits, what: str) -> int | None:
    if bits is None:
        return None
    if not isinstance(bits, int | np.integer) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{what} must be an int in {MIN_BITS}..{MAX_BITS} (or None for float); got {bits!r}")
    return int(bits)


def _ste_round_clip(v, low: float, high: float):
    """round(clip(v, low, high)) forward; backward: gradient 1 where low <= v <= high, 0 outside."""
    q = jax.lax.stop_gradient(jnp.round(jnp.clip(v, low, high)))
    inside = (v >= low) & (v <= high)
    return jnp.where(inside, v + jax.lax.stop_gradient(q - v), q)


def fake_quant(x, lo, hi, bits: int):
    """Quantize-dequantize x to `bits` bits on the asymmetric grid spanning [lo, hi] (0 included).

    Values outside the range clip to its ends (and get no gradient); inside, the gradient is 1."""
    x = jnp.asarray(x, jnp.float32)
    lo = jnp.minimum(jnp.asarray(lo, jnp.float32), 0.0)
    hi = jnp.maximum(jnp.asarray(hi, jnp.float32), 0.0)
    levels = float(2**bits - 1)
    scale = jax.lax.stop_gradient(jnp.maximum((hi - lo) / levels, 1e-12))
    zero_point = jax.lax.stop_gradient(jnp.round(-lo / scale))
    q = _ste_round_clip(x / scale + zero_point, 0.0, levels)
    return (q - zero_point) * scale


def fake_quant_weights(w, bits: int):
    """Symmetric per-output-channel (last axis) quantize-dequantize of a kernel."""
    w = jnp.asarray(w)
    qmax = float(2 ** (bits - 1) - 1)
    axes = tuple(range(w.ndim - 1))
    peak = jnp.max(jnp.abs(w), axis=axes, keepdims=True)
    scale = jax.lax.stop_gradient(jnp.where(peak > 0, peak / qmax, 1.0))
    return (_ste_round_clip(w / scale, -qmax, qmax) * scale).astype(w.dtype)


def quantize_params(params, bits: int):
    """Every "kernel" leaf (convolutions and dense layers) fake-quantized; other leaves unchanged."""

    def leaf(path, value):
        name = getattr(path[-1], "key", None)
        return fake_quant_weights(value, bits) if name == "kernel" else value

    return jax.tree_util.tree_map_with_path(leaf, params)


def _is_quantized_layer(context) -> bool:
    return isinstance(context.module, nn.Conv | nn.Dense) and context.method_name == "__call__"


def _layer_path(context) -> tuple[str, ...]:
    return tuple(context.module.path)


def _lookup(tree: dict, path: tuple[str, ...]):
    for name in path:
        if not isinstance(tree, dict) or name not in tree:
            return None
        tree = tree[name]
    return tree


def _store(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def apply(module, spec, variables, *args, **kwargs):
    """`module.apply` with the spec's fake quantization (weights, and activations from the "quant"
    ranges of `variables`); exactly `module.apply` for a float spec."""
    if spec.weight_bits is None and spec.activation_bits is None:
        return module.apply(variables, *args, **kwargs)
    variables = dict(variables)
    ranges = variables.pop("quant", None)
    if spec.weight_bits is not None:
        variables["params"] = quantize_params(variables["params"], spec.weight_bits)
    if spec.activation_bits is None:
        return module.apply(variables, *args, **kwargs)
    if not ranges:
        raise ValueError(
            "this net quantizes activations but its variables have no activation ranges: calibrate it "
            "first with nets.calibrate(net, variables, images)"
        )

    def quantize_input(next_fun, call_args, call_kwargs, context):
        if not _is_quantized_layer(context):
            return next_fun(*call_args, **call_kwargs)
        path = _layer_path(context)
        found = _lookup(ranges, path)
        if found is None:
            raise ValueError(f"no activation range for layer {'/'.join(path)}: calibrate this net again")
        lo, hi = found[0], found[1]
        x = fake_quant(call_args[0], lo, hi, spec.activation_bits).astype(call_args[0].dtype)
        return next_fun(x, *call_args[1:], **call_kwargs)

    with nn.intercept_methods(quantize_input):
        return module.apply(variables, *args, **kwargs)


def observe(module, spec, variables, x):
    """(min, max) of the input of every convolution and dense layer on batch x, in evaluation mode
    (weights quantized if the spec says so; activations in float, as calibration sees them)."""
    variables = {k: v for k, v in variables.items() if k != "quant"}
    if spec.weight_bits is not None:
        variables["params"] = quantize_params(variables["params"], spec.weight_bits)
    seen = {}

    def record(next_fun, call_args, call_kwargs, context):
        if _is_quantized_layer(context):
            value = call_args[0].astype(jnp.float32)
            _store(seen, _layer_path(context), jnp.stack([jnp.min(value), jnp.max(value)]))
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(record):
        module.apply(variables, x, train=False)
    return seen
