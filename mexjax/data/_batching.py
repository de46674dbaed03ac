"""Batches on the device and the standard CIFAR augmentation, jit-compiled.

`augment` is a pure function of (key, images) meant to run inside a jit-compiled train step, so
the host only ships uint8 batches and the device does crop and flip.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.data._dataset import Dataset
from mexjax.data._queries import permutation


def augment(key: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True) -> jax.Array:
    """Random crop after zero padding by `pad` pixels, and random horizontal flip, per image.

    images: [B, H, W, C] of any dtype -> the same shape and dtype. Use flip=False for digits and
    traffic signs, whose meaning a mirror changes.
    """
    if images.ndim != 4:
        raise ValueError(f"augment expects [B, H, W, C] images; got shape {images.shape}")
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(key)
    if pad > 0:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1, dtype=jnp.int32)

        def crop(image, offset):
            start = (offset[0], offset[1], jnp.zeros((), jnp.int32))
            return jax.lax.dynamic_slice(image, start, (height, width, channels))

        images = jax.vmap(crop)(padded, offsets)
    if flip:
        mirror = jax.random.bernoulli(flip_key, 0.5, (batch,))
        images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1, :], images)
    return images


def batches(
    dataset: Dataset,
    batch_size: int,
    *,
    key: jax.Array | None = None,
    drop_last: bool = False,
    device=None,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield (uint8 images, int32 labels) batches placed on `device` (default: the default device).

    With a key the order is a deterministic shuffle of that key; without, the dataset order.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    n = len(dataset)
    order = permutation(key, n) if key is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        if key is not None:
            idx = np.sort(idx)  # sorted reads are faster on a memory map; order within a batch is moot
        images = np.asarray(dataset.images[idx])
        labels = np.asarray(dataset.labels[idx])
        yield jax.device_put(images, device), jax.device_put(labels, device)
