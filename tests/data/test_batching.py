"""On-device augmentation (inside jit) and batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import data


def _images(b=16, h=8, w=8, c=3, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (b, h, w, c), dtype=np.uint8)


def test_augment_without_crop_or_flip_is_identity():
    x = _images()
    y = data.augment(jax.random.key(0), jnp.asarray(x), pad=0, flip=False)
    np.testing.assert_array_equal(np.asarray(y), x)


def test_flip_only_mirrors_some_images():
    x = _images(64)
    y = np.asarray(jax.jit(lambda k, im: data.augment(k, im, pad=0))(jax.random.key(1), x))
    same = np.all(y == x, axis=(1, 2, 3))
    mirrored = np.all(y == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 10 < mirrored.sum() < 54


def test_crop_is_a_window_of_the_padded_image():
    pad = 2
    x = _images(32)
    y = np.asarray(jax.jit(lambda k, im: data.augment(k, im, pad=pad, flip=False))(jax.random.key(2), x))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        windows = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(padded[i, dy : dy + 8, dx : dx + 8], y[i])
        ]
        assert windows, f"image {i} is not a crop of its padded original"
        offsets.add(windows[0])
    assert len(offsets) > 5  # offsets vary across the batch


def test_augment_is_deterministic_per_key_and_keeps_dtype():
    x = jnp.asarray(_images())
    a = data.augment(jax.random.key(5), x)
    b = data.augment(jax.random.key(5), x)
    c = data.augment(jax.random.key(6), x)
    assert a.dtype == jnp.uint8 and a.shape == x.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(ValueError, match="B, H, W, C"):
        data.augment(jax.random.key(0), x[0])


def test_batches_cover_the_dataset_once():
    n = 23
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    ds = data.Dataset(images, (np.arange(n) % 3).astype(np.int32), ("a", "b", "c"))
    seen = []
    for xb, yb in data.batches(ds, 5, key=jax.random.key(0)):
        assert isinstance(xb, jax.Array) and xb.dtype == jnp.uint8 and yb.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(yb), np.asarray(xb[:, 0, 0, 0]) % 3)
        seen += np.asarray(xb[:, 0, 0, 0]).tolist()
    assert sorted(seen) == list(range(n))
    assert [len(y) for _, y in data.batches(ds, 5, drop_last=True)] == [5, 5, 5, 5]
    ordered = np.concatenate([np.asarray(x[:, 0, 0, 0]) for x, _ in data.batches(ds, 5)])
    np.testing.assert_array_equal(ordered, np.arange(n))
    shuffled = np.concatenate(
        [np.asarray(x[:, 0, 0, 0]) for x, _ in data.batches(ds, 5, key=jax.random.key(0))]
    )
    assert not np.array_equal(shuffled, np.arange(n))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(ds, 0))


def test_dataset_validation():
    with pytest.raises(TypeError, match="uint8"):
        data.Dataset(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int32), ("a",))
    with pytest.raises(TypeError, match="int32"):
        data.Dataset(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.int64), ("a",))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        data.Dataset(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3, np.int32), ("a",))
    with pytest.raises(ValueError, match="class names"):
        data.Dataset(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1], np.int32), ("a",))
    ds = data.Dataset(
        np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1], np.int32), ("a", "b"), "toy", "train"
    )
    assert repr(ds) == "<toy/train: 2 images (4, 4, 3) uint8, 2 classes>"
    assert ds.take([1]).labels.tolist() == [1]
