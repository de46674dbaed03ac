"""Pure image transforms that fit a dataset to a victim's input: channels, size, value scale.

All work on NHWC batches, accept numpy or jax arrays, run under jit, and keep uint8 as uint8
(rounding and clipping) so query sets stay in the same form as datasets until `normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what Pillow's convert("L") uses


def _check_batch(images, what: str = "images"):
    if getattr(images, "ndim", None) != 4:
        raise ValueError(
            f"{what} must be a batch of shape [N, H, W, C] (NHWC); got shape "
            f"{getattr(images, 'shape', None)}. Add a batch axis with images[None] for one image."
        )


def _restore_dtype(x: jax.Array, dtype) -> jax.Array:
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        return jnp.clip(jnp.round(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def to_channels(images, channels: int) -> jax.Array:
    """Grayscale <-> RGB: 1 -> 3 repeats the channel, 3 -> 1 takes BT.601 luma."""
    _check_batch(images)
    images = jnp.asarray(images)
    have = images.shape[-1]
    if channels not in (1, 3) or have not in (1, 3):
        raise ValueError(f"only 1 and 3 channels are supported; asked {have} -> {channels}")
    if have == channels:
        return images
    if channels == 3:
        return jnp.repeat(images, 3, axis=-1)
    luma = images.astype(jnp.float32) @ jnp.asarray(_LUMA, dtype=jnp.float32)
    return _restore_dtype(luma[..., None], images.dtype)


def resize(images, size: Sequence[int], method: str = "bilinear") -> jax.Array:
    """Resize to (H, W) with `jax.image.resize` (antialiased when shrinking)."""
    _check_batch(images)
    images = jnp.asarray(images)
    height, width = size
    if (height, width) == images.shape[1:3]:
        return images
    shape = (images.shape[0], height, width, images.shape[3])
    out = jax.image.resize(images.astype(jnp.float32), shape, method=method)
    return _restore_dtype(out, images.dtype)


def pad_to(images, size: Sequence[int], value: int | float = 0) -> jax.Array:
    """Pad to (H, W) with a constant, centring the image (e.g. 28x28 FashionMNIST to 32x32)."""
    _check_batch(images)
    images = jnp.asarray(images)
    height, width = size
    dh, dw = height - images.shape[1], width - images.shape[2]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad {images.shape[1:3]} images to the smaller size {size}; use resize")
    pads = ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0))
    return jnp.pad(images, pads, constant_values=jnp.asarray(value, dtype=images.dtype))


def to_input_shape(images, input_shape: Sequence[int], *, mode: str = "resize") -> jax.Array:
    """Fit images to a model's (H, W, C): convert channels, then resize or pad ('mode')."""
    _check_batch(images)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {tuple(input_shape)}")
    height, width, channels = input_shape
    images = to_channels(images, channels)
    if mode == "resize":
        return resize(images, (height, width))
    if mode == "pad":
        return pad_to(images, (height, width))
    raise ValueError(f"mode must be 'resize' or 'pad'; got {mode!r}")


def channel_stats(images, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images in [0, 1] units, streamed in chunks (memmap-safe)."""
    _check_batch(images)
    if len(images) == 0:
        raise ValueError("channel_stats of an empty set of images")
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk], dtype=np.float64) / 255.0
        total += block.sum(axis=(0, 1, 2))
        total_sq += np.square(block).sum(axis=(0, 1, 2))
    count = np.prod(images.shape[:3])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(images, mean, std) -> jax.Array:
    """uint8 images -> float32 (x / 255 - mean) / std, mean and std per channel in [0, 1] units."""
    _check_batch(images)
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise TypeError(f"normalize expects uint8 images in [0, 255]; got {images.dtype}")
    mean = jnp.asarray(mean, dtype=jnp.float32).reshape(-1)
    std = jnp.asarray(std, dtype=jnp.float32).reshape(-1)
    if mean.shape[0] != images.shape[-1] or std.shape[0] != images.shape[-1]:
        raise ValueError(
            f"mean {mean.shape} and std {std.shape} must have one value per channel ({images.shape[-1]})"
        )
    try:
        concrete_std = np.asarray(std)
    except jax.errors.TracerArrayConversionError:  # under jit: values unknown, skip the check
        concrete_std = None
    if concrete_std is not None and np.any(concrete_std <= 0):
        raise ValueError(f"std must be positive; got {concrete_std}")
    return (images.astype(jnp.float32) / 255.0 - mean.reshape(1, 1, 1, -1)) / std.reshape(1, 1, 1, -1)


def fit_to_input(images: np.ndarray, input_shape) -> np.ndarray:
    """uint8 images padded (when not larger) or resized to a model's (H, W, C), in chunks (bounded
    memory): how a victim trained at one size reads images of another."""
    mode = "pad" if images.shape[1] <= input_shape[0] else "resize"
    return np.concatenate(
        [
            np.asarray(to_input_shape(images[i : i + 4096], input_shape, mode=mode))
            for i in range(0, len(images), 4096)
        ]
    )


def fit_dataset(ds, input_shape):
    """A Dataset with its images fitted to input_shape by `fit_to_input` (itself when they fit already)."""
    if ds.image_shape == tuple(input_shape):
        return ds
    return ds.with_images(fit_to_input(ds.images, input_shape))
