"""Query sets and deterministic subsets: everything here is a pure function of a jax.random key."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.data._dataset import Dataset


def noise_images(
    key: jax.Array,
    num: int,
    shape: Sequence[int],
    *,
    kind: str = "uniform",
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.25,
) -> np.ndarray:
    """A query set of random noise images, uint8[num, H, W, C].

    kind="uniform": every pixel uniform over 0..255. kind="gaussian": per-channel N(mean, std) in
    [0, 1] units (pass a dataset's `channel_stats` for dataset-normalized noise), clipped, quantized.
    """
    if num < 0 or len(shape) != 3:
        raise ValueError(f"need num >= 0 and shape (H, W, C); got num={num}, shape={tuple(shape)}")
    full = (num, *shape)
    if kind == "uniform":
        images = jax.random.randint(key, full, 0, 256, dtype=jnp.int32)
    elif kind == "gaussian":
        mean = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), (shape[-1],)).reshape(1, 1, 1, -1)
        std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), (shape[-1],)).reshape(1, 1, 1, -1)
        unit = mean + std * jax.random.normal(key, full, dtype=jnp.float32)
        images = jnp.round(jnp.clip(unit, 0.0, 1.0) * 255.0)
    else:
        raise ValueError(f"kind must be 'uniform' or 'gaussian'; got {kind!r}")
    return np.asarray(images.astype(jnp.uint8))


def permutation(key: jax.Array, n: int) -> np.ndarray:
    """A deterministic permutation of range(n) from a key (the same key gives the same order)."""
    return np.asarray(jax.random.permutation(key, n))


def split(dataset: Dataset, key: jax.Array, sizes: Sequence[int | float]) -> tuple[Dataset, ...]:
    """Shuffle once with `key`, then cut into consecutive parts.

    `sizes` are counts, or fractions summing to at most 1 (e.g. (0.9, 0.1) for train/held-out).
    """
    n = len(dataset)
    if all(isinstance(s, float) for s in sizes):
        if any(s < 0 for s in sizes) or sum(sizes) > 1 + 1e-9:
            raise ValueError(f"fractions must be >= 0 and sum to at most 1; got {tuple(sizes)}")
        counts = [round(s * n) for s in sizes]
        counts[-1] = min(counts[-1], n - sum(counts[:-1]))
    elif all(isinstance(s, int) for s in sizes):
        counts = list(sizes)
    else:
        raise TypeError(f"sizes must be all ints or all floats; got {tuple(sizes)}")
    if any(c < 0 for c in counts) or sum(counts) > n:
        raise ValueError(f"cannot cut {n} samples into parts of {counts}")
    order = permutation(key, n)
    bounds = np.cumsum([0, *counts])
    return tuple(dataset.take(np.sort(order[a:b])) for a, b in itertools.pairwise(bounds))


def subset(dataset: Dataset, key: jax.Array, num: int, *, per_class: bool = False) -> Dataset:
    """`num` samples drawn without replacement; with per_class=True, `num` from every class."""
    if not per_class:
        if not 0 <= num <= len(dataset):
            raise ValueError(f"cannot draw {num} samples from {len(dataset)}")
        return dataset.take(np.sort(permutation(key, len(dataset))[:num]))
    order = permutation(key, len(dataset))
    labels = np.asarray(dataset.labels)[order]
    chosen = []
    for cls in range(dataset.num_classes):
        members = order[labels == cls]
        if len(members) < num:
            raise ValueError(
                f"class {cls} ({dataset.class_names[cls]}) has {len(members)} samples, "
                f"fewer than the {num} asked per class"
            )
        chosen.append(members[:num])
    return dataset.take(np.sort(np.concatenate(chosen)))
