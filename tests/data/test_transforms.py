"""Channel conversion, resizing, padding and normalization against numpy/Pillow references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mexjax import data


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_gray_to_rgb_repeats():
    x = _images((2, 5, 5, 1))
    y = np.asarray(data.to_channels(x, 3))
    assert y.shape == (2, 5, 5, 3) and y.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(y[..., c], x[..., 0])


def test_rgb_to_gray_matches_pillow():
    x = _images((3, 6, 6, 3))
    y = np.asarray(data.to_channels(x, 1))
    expected = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in x])
    assert y.dtype == np.uint8
    assert np.abs(y[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_to_channels_rejects_unsupported():
    with pytest.raises(ValueError, match="1 and 3 channels"):
        data.to_channels(_images((1, 2, 2, 4)), 3)
    with pytest.raises(ValueError, match="NHWC"):
        data.to_channels(_images((2, 2, 3)), 3)


def test_resize_constant_image_stays_constant_and_shape():
    x = np.full((2, 28, 28, 1), 77, np.uint8)
    y = np.asarray(data.resize(x, (32, 32)))
    assert y.shape == (2, 32, 32, 1) and y.dtype == np.uint8
    np.testing.assert_array_equal(y, 77)


def test_resize_samples_a_ramp_at_pixel_centres():
    # Output pixel j of a 2x downsample is centred at input coordinate 2j + 0.5: a linear ramp
    # must give exactly that value away from the borders, whatever the (symmetric) kernel.
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[None, None, :, None], (1, 16, 16, 1))
    y = np.asarray(data.resize(ramp, (8, 8)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0, 4, 2:-2, 0], 2 * np.arange(2, 6) + 0.5, atol=1e-5)


def test_pad_to_centres():
    x = _images((2, 28, 28, 1))
    y = np.asarray(data.pad_to(x, (32, 32)))
    assert y.shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(y[:, 2:30, 2:30], x)
    assert y[:, :2].sum() == 0 and y[:, 30:].sum() == 0
    with pytest.raises(ValueError, match="smaller size"):
        data.pad_to(x, (16, 16))


@pytest.mark.parametrize("mode", ["resize", "pad"])
def test_to_input_shape(mode):
    x = _images((3, 28, 28, 1))
    y = data.to_input_shape(x, (32, 32, 3), mode=mode)
    assert y.shape == (3, 32, 32, 3) and y.dtype == jnp.uint8
    with pytest.raises(ValueError, match="mode"):
        data.to_input_shape(x, (32, 32, 3), mode="stretch")


def test_to_input_shape_runs_under_jit():
    x = _images((2, 64, 64, 3))
    y = jax.jit(lambda im: data.to_input_shape(im, (32, 32, 1)))(x)
    assert y.shape == (2, 32, 32, 1)


def test_channel_stats_match_numpy():
    x = _images((50, 4, 4, 3))
    mean, std = data.channel_stats(x, chunk=7)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-5)


def test_normalize_standardizes():
    x = _images((64, 8, 8, 3))
    mean, std = data.channel_stats(x)
    z = np.asarray(data.normalize(x, mean, std))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_normalize_errors():
    x = _images((2, 4, 4, 3))
    with pytest.raises(TypeError, match="uint8"):
        data.normalize(x.astype(np.float32), 0.5, 0.5)
    with pytest.raises(ValueError, match="one value per channel"):
        data.normalize(x, [0.5, 0.5], [0.2, 0.2])
    with pytest.raises(ValueError, match="positive"):
        data.normalize(x, [0.5] * 3, [0.2, 0.0, 0.2])
