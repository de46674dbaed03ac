"""Noise query sets, deterministic splits and subsets."""

import jax
import numpy as np
import pytest

from mexjax import data


def _dataset(n=100, classes=4):
    labels = (np.arange(n) % classes).astype(np.int32)
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 1)).copy()
    return data.Dataset(images, labels, tuple(f"c{i}" for i in range(classes)))


def test_uniform_noise():
    x = data.noise_images(jax.random.key(0), 64, (8, 8, 3))
    assert x.shape == (64, 8, 8, 3) and x.dtype == np.uint8
    assert x.min() < 10 and x.max() > 245
    assert abs(x.mean() - 127.5) < 3
    np.testing.assert_array_equal(x, data.noise_images(jax.random.key(0), 64, (8, 8, 3)))
    assert not np.array_equal(x, data.noise_images(jax.random.key(1), 64, (8, 8, 3)))


def test_gaussian_noise_follows_channel_stats():
    mean, std = (0.2, 0.5, 0.8), (0.05, 0.1, 0.05)
    x = data.noise_images(jax.random.key(0), 256, (8, 8, 3), kind="gaussian", mean=mean, std=std)
    got_mean, got_std = data.channel_stats(x)
    np.testing.assert_allclose(got_mean, mean, atol=0.01)
    np.testing.assert_allclose(got_std, std, atol=0.01)


def test_noise_rejects_unknown_kind():
    with pytest.raises(ValueError, match="uniform"):
        data.noise_images(jax.random.key(0), 2, (4, 4, 1), kind="pink")


def test_split_is_a_deterministic_partition():
    ds = _dataset()
    a, b = data.split(ds, jax.random.key(3), (0.7, 0.3))
    assert len(a) == 70 and len(b) == 30
    ids = np.concatenate([a.images[:, 0, 0, 0], b.images[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == list(range(100))
    a2, _ = data.split(ds, jax.random.key(3), (0.7, 0.3))
    np.testing.assert_array_equal(a.images, a2.images)
    a3, _ = data.split(ds, jax.random.key(4), (0.7, 0.3))
    assert not np.array_equal(a.images, a3.images)
    np.testing.assert_array_equal(a.labels, a.images[:, 0, 0, 0] % 4)  # labels travel with images


def test_split_by_counts_and_errors():
    ds = _dataset()
    parts = data.split(ds, jax.random.key(0), (10, 20, 5))
    assert [len(p) for p in parts] == [10, 20, 5]
    with pytest.raises(ValueError, match="cannot cut"):
        data.split(ds, jax.random.key(0), (90, 20))
    with pytest.raises(ValueError, match="sum to at most 1"):
        data.split(ds, jax.random.key(0), (0.8, 0.3))
    with pytest.raises(TypeError, match="all ints or all floats"):
        data.split(ds, jax.random.key(0), (10, 0.5))


def test_subset_per_class():
    ds = _dataset()
    sub = data.subset(ds, jax.random.key(0), 5, per_class=True)
    assert np.bincount(sub.labels).tolist() == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="fewer than the 26"):
        data.subset(ds, jax.random.key(0), 26, per_class=True)
    plain = data.subset(ds, jax.random.key(0), 13)
    assert len(plain) == 13 and len(set(plain.images[:, 0, 0, 0].tolist())) == 13
