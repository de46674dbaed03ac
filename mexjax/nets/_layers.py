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


def _windows(x, kh, kw, sh, sw, padding):
    """The k*k shifted (strided) views of x padded as `padding` says, and the output's height, width."""
    (top, bottom), (left, right) = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), (sh, sw), padding)
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = (x.shape[1] - kh) // sh + 1
    out_w = (x.shape[2] - kw) // sw + 1
    views = [
        x[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return views, out_h, out_w


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
        views, _, _ = _windows(inputs, kh, kw, sh, sw, self.padding)
        total = None
        for k, window in enumerate(views):
            term = window * kernel[k // kw, k % kw][None, None]  # [1, 1, 1, C] over N, H, W
            total = term if total is None else total + term
        return total


class Conv(nn.Conv):
    """`nn.Conv` (no bias, no groups, no dilation) that runs XLA's slow CPU cases as one matrix product.

    Why: XLA's CPU convolution is pathological where the kernel is larger than the input (a 3x3
    convolution over 2x2 or 1x1 pixels: VGG16's last block, 725 ms against 5.6 ms as one product of the
    k*k shifted views at 512 channels, batch 128; benchmarks/bench_train_step.py). Everywhere else it is
    XLA's own convolution. (1x1 convolutions as a matrix product had 3-5x faster gradients too, but
    changing MobileNet's rounding flipped the tiny-scale captioning claim tests, which first need
    margins that hold under any rounding; not done yet.)
    The class is named Conv so that parameters keep nn.Conv's names ("Conv_0", ...) and shapes:
    checkpoints load either way, and the quantization interceptors see an ordinary nn.Conv.
    """

    @nn.compact
    def __call__(self, inputs):
        if self.feature_group_count != 1 or self.use_bias:
            raise NotImplementedError("Conv supports neither groups (see DepthwiseConv) nor bias")
        if self.input_dilation not in (None, 1) or self.kernel_dilation not in (None, 1):
            raise NotImplementedError("Conv supports no dilation")
        kh, kw = self.kernel_size
        sh, sw = (self.strides, self.strides) if isinstance(self.strides, int) else self.strides
        channels = inputs.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, channels, self.features), self.param_dtype)
        inputs, kernel = promote_dtype(inputs, kernel, dtype=self.dtype)
        if min(inputs.shape[1:3]) >= max(kh, kw):
            return jax.lax.conv_general_dilated(
                inputs,
                kernel,
                (sh, sw),
                self.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                precision=self.precision,
            )
        views, out_h, out_w = _windows(inputs, kh, kw, sh, sw, self.padding)
        patches = jnp.concatenate(views, axis=-1)
        out = jnp.dot(
            patches.reshape(-1, kh * kw * channels),
            kernel.reshape(kh * kw * channels, self.features),
            precision=self.precision,
        )
        return out.reshape(inputs.shape[0], out_h, out_w, self.features)


def _conv(features, kernel, stride, dtype, groups=1, name=None):
    layer = Conv
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
                x = _max_pool(x, 2)
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


def _max_pool(x, k: int):
    """k x k max pooling with stride k (VALID: a remainder of rows or columns is dropped), as a max
    over reshaped windows.

    Why not nn.max_pool: its gradient is XLA's select-and-scatter, 3-6x slower on CPU than the gradient
    of a plain max at the backbones' 2x2 pooling (VGG16 w1/4 training step 149 -> 122 ms at batch 128;
    benchmarks/bench_train_step.py); the values are the same. The internal classifiers keep
    nn.max_pool: there the reshaped max made ResNet56's step ~20 % slower (few channels, wide windows)."""
    b, h, w, c = x.shape
    windows = x[:, : h // k * k, : w // k * k].reshape(b, h // k, k, w // k, k, c)
    return jnp.max(windows, axis=(2, 4))


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
