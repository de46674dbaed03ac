"""Flax (linen) building blocks of the multi-exit backbones and their heads."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from mexjax.nets._arch import Unit, ic_pool

Dtype = Any


def _bn(train: bool, dtype, name=None):
    # PyTorch's momentum 0.1 is Flax's 0.9 (weight of the old running average). Batch norm always
    # computes in float32 (also with bfloat16 convolutions): its statistics need the precision.
    del dtype
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=jnp.float32, name=name
    )


class DepthwiseConv(nn.Conv):
    """A depthwise (one filter per channel) convolution computed as k*k shifted multiply-adds.

    Why: XLA's CPU backend runs a depthwise `conv_general_dilated` ~70x slower than PyTorch and its
    gradient ~5x slower (benchmarks/bench_conv.py); the shifted sum gives the same numbers, keeps the
    kernel's name, shape [k, k, 1, C] and initialization (checkpoints and quantization see an ordinary
    `nn.Conv`), and is plain elementwise work every backend fuses well. Only what the backbones use is
    supported: square kernels, SAME or VALID padding, no dilation, no bias.
    """

    @nn.compact
    def __call__(self, inputs):
        channels = inputs.shape[-1]
        if self.features != channels or self.feature_group_count != channels:
            raise ValueError(
                f"DepthwiseConv needs features == feature_group_count == input channels; got "
                f"features={self.features}, groups={self.feature_group_count}, channels={channels}"
            )
        if self.use_bias or self.input_dilation not in (None, 1) or self.kernel_dilation not in (None, 1):
            raise NotImplementedError("DepthwiseConv supports neither bias nor dilation")
        kh, kw = self.kernel_size
        sh, sw = (self.strides, self.strides) if isinstance(self.strides, int) else self.strides
        kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, channels), self.param_dtype)
        inputs, kernel = promote_dtype(inputs, kernel, dtype=self.dtype)
        (top, bottom), (left, right) = jax.lax.padtype_to_pads(
            inputs.shape[1:3], (kh, kw), (sh, sw), self.padding
        )
        x = jnp.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
        out_h = (x.shape[1] - kh) // sh + 1
        out_w = (x.shape[2] - kw) // sw + 1
        total = None
        for i in range(kh):
            for j in range(kw):
                window = x[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :]
                term = window * kernel[i : i + 1, j : j + 1]  # [1, 1, 1, C] broadcasts over N, H, W
                total = term if total is None else total + term
        return total


def _conv(features, kernel, stride, dtype, groups=1, name=None):
    layer = nn.Conv
    if groups > 1:
        if groups != features:
            raise NotImplementedError("grouped convolutions other than depthwise are not used here")
        layer = DepthwiseConv
    return layer(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding="SAME" if kernel > 1 else "VALID",
        feature_group_count=groups,
        use_bias=False,
        dtype=dtype,
        kernel_init=nn.initializers.kaiming_normal(),
        name=name,
    )


def _conv_bn(x, train, dtype, features, kernel, stride, groups=1):
    """Conv in the compute dtype, then float32 batch norm."""
    y = _conv(features, kernel, stride, dtype, groups)(x)
    return _bn(train, dtype)(y.astype(jnp.float32))


class BackboneUnit(nn.Module):
    """One unit; returns (output, tap): tap is what an IC after this unit reads."""

    unit: Unit
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        u, dt = self.unit, self.dtype
        if u.kind == "conv":
            x = nn.relu(_conv_bn(x, train, dt, u.out_channels, u.kernel, u.stride))
            if u.pool:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return x, x
        if u.kind == "basic":
            y = nn.relu(_conv_bn(x, train, dt, u.out_channels, 3, u.stride))
            y = _conv_bn(y, train, dt, u.out_channels, 3, 1)
            if u.stride != 1 or u.in_channels != u.out_channels:
                x = _conv_bn(x, train, dt, u.out_channels, 1, u.stride)
            pre = x + y
            return nn.relu(pre), pre  # ResNet-SDN ICs read the block output before its final ReLU
        if u.kind == "dwsep":
            x = nn.relu(_conv_bn(x, train, dt, u.in_channels, 3, u.stride, groups=u.in_channels))
            x = nn.relu(_conv_bn(x, train, dt, u.out_channels, 1, 1))
            return x, x
        raise ValueError(f"unknown unit kind {u.kind!r}")


def _avg_pool(x, k: int):
    """k x k average pooling with stride k (flax's avg_pool breaks strict dtype promotion)."""
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, k, k, 1), "VALID") / float(k * k)


class ICHead(nn.Module):
    """Internal classifier: learned mix of max- and average-pooling to a 4x4 map, then linear."""

    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        k = ic_pool(x.shape[1:3])
        if k > 1:
            mix = jax.nn.sigmoid(self.param("alpha_logit", nn.initializers.zeros, ()))
            mix = mix.astype(x.dtype)
            x = mix * nn.max_pool(x, (k, k), (k, k)) + (1 - mix) * _avg_pool(x, k)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class FinalHead(nn.Module):
    """The backbone's own classifier: an FC stack with dropout on the flattened map (VGG, AlexNet),
    or global average pool + linear. features=True stops before the last layer (penultimate features)."""

    num_classes: int
    hidden: tuple[int, ...]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool, features: bool = False):
        x = x.reshape(x.shape[0], -1) if self.hidden else jnp.mean(x, axis=(1, 2))
        for size in self.hidden:
            x = nn.relu(nn.Dense(size, dtype=self.dtype)(x).astype(jnp.float32))
            x = nn.Dropout(0.5, deterministic=not train)(x)
        last = nn.Dense(self.num_classes, dtype=self.dtype)
        if features:
            return x.astype(jnp.float32)
        return last(x).astype(jnp.float32)
