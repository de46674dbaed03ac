"""Flax (linen) building blocks of the multi-exit backbones and their heads."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mexjax.nets._arch import Unit, ic_pool

Dtype = Any


def _bn(train: bool, dtype, name=None):
    # PyTorch's momentum 0.1 is Flax's 0.9 (weight of the old running average).
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


def _conv(features, kernel, stride, dtype, groups=1, name=None):
    return nn.Conv(
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


class BackboneUnit(nn.Module):
    """One unit; returns (output, tap): tap is what an IC after this unit reads."""

    unit: Unit
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        u, dt = self.unit, self.dtype
        if u.kind == "conv":
            x = nn.relu(_bn(train, dt)(_conv(u.out_channels, 3, u.stride, dt)(x)))
            if u.pool:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return x, x
        if u.kind == "basic":
            y = nn.relu(_bn(train, dt)(_conv(u.out_channels, 3, u.stride, dt)(x)))
            y = _bn(train, dt)(_conv(u.out_channels, 3, 1, dt)(y))
            if u.stride != 1 or u.in_channels != u.out_channels:
                x = _bn(train, dt)(_conv(u.out_channels, 1, u.stride, dt)(x))
            pre = x + y
            return nn.relu(pre), pre  # ResNet-SDN ICs read the block output before its final ReLU
        if u.kind == "dwsep":
            x = nn.relu(_bn(train, dt)(_conv(u.in_channels, 3, u.stride, dt, groups=u.in_channels)(x)))
            x = nn.relu(_bn(train, dt)(_conv(u.out_channels, 1, 1, dt)(x)))
            return x, x
        raise ValueError(f"unknown unit kind {u.kind!r}")


def _avg_pool(x, k: int):
    """k x k average pooling with stride k (flax's avg_pool breaks strict dtype promotion)."""
    summed = jax.lax.reduce_window(
        x, jnp.zeros((), x.dtype), jax.lax.add, (1, k, k, 1), (1, k, k, 1), "VALID"
    )
    return summed / float(k * k)


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
    """The backbone's own classifier: VGG's FC stack with dropout, or global average pool + linear."""

    num_classes: int
    hidden: tuple[int, ...]
    flatten: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape(x.shape[0], -1) if self.flatten else jnp.mean(x, axis=(1, 2))
        for size in self.hidden:
            x = nn.relu(nn.Dense(size, dtype=self.dtype)(x))
            x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
