"""Input-transform defenses and the SVM detector."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import defenses


def _smooth_images(n=4, channels=3, seed=0):
    """Smooth gradients (what JPEG and non-local means keep) as uint8 [n, 32, 32, channels]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    a = rng.uniform(0, 1, size=(n, 1, 1, channels))
    return np.round((a * yy[None, :, :, None] + (1 - a) * xx[None, :, :, None]) * 200 + 20)


def _checkerboard(shape, amplitude):
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
    return (((yy + xx) % 2) * 2 - 1)[None, :, :, None] * amplitude


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_keeps_dtype_and_removes_high_frequency_noise(channels):
    clean = _smooth_images(channels=channels).astype(np.uint8)
    noisy = np.clip(clean + _checkerboard(clean.shape, 8), 0, 255).astype(np.uint8)
    out = defenses.jpeg(noisy, quality=75)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    err = lambda a: np.abs(a.astype(float) - clean).mean()
    assert err(out) < 0.75 * err(noisy)  # q75 quantizes the highest frequencies hardest
    as_float = defenses.jpeg(noisy.astype(np.float32) / 255, quality=75)
    assert as_float.dtype == np.float32 and np.allclose(as_float * 255, out, atol=0.5)
    assert err(defenses.jpeg(clean, quality=95)) < err(defenses.jpeg(clean, quality=10))


@pytest.mark.parametrize("channels", [1, 3])
def test_non_local_means_smooths_noise(channels):
    clean = _smooth_images(channels=channels)
    rng = np.random.default_rng(1)
    noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
    out = defenses.smooth(noisy)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    assert np.abs(out - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_transforms_reject_bad_input():
    with pytest.raises(ValueError, match="quality"):
        defenses.jpeg(np.zeros((1, 8, 8, 3), np.uint8), quality=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        defenses.jpeg(np.full((1, 8, 8, 3), 3.0, np.float32))
    with pytest.raises(ValueError, match="NHWC"):
        defenses.smooth(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="odd"):
        defenses.smooth(np.zeros((1, 8, 8, 3), np.uint8), patch=4)


def test_exit_features_hand_case():
    uniform = np.full((2, 1, 4), 0.25)
    sure = np.zeros((2, 1, 4))
    sure[:, :, 1] = 1.0
    f = defenses.exit_features(np.concatenate([uniform, sure], axis=1))
    np.testing.assert_allclose(f[0], [0.25, 0.25, 1.0, 1.0], atol=1e-6)  # top-1 per exit, then entropy
    np.testing.assert_allclose(f[1], [1.0, 1.0, 0.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        defenses.exit_features(np.full((2, 1, 4), 3.0))
    # the same definition traced (the adaptive attack differentiates through it), and its gradient
    traced = jax.jit(lambda p: defenses.exit_features(p, check=False))
    np.testing.assert_allclose(
        traced(np.concatenate([uniform, sure], axis=1).astype(np.float32)), f, atol=1e-6
    )
    grad = jax.grad(lambda p: defenses.exit_features(p, check=False)[0, 0])(jnp.full((2, 1, 4), 0.25))
    assert float(grad[0, 0].sum()) > 0  # the top-1 probability grows with the probabilities


def test_detector_separates_and_reports():
    rng = np.random.default_rng(0)
    clean = rng.normal(0.0, 1.0, (120, 4))
    attacked = rng.normal(0.0, 1.0, (120, 4))
    attacked[:, 0] += 4.0  # one feature moves under attack
    detector = defenses.fit_detector(clean[:80], attacked[:80])
    report = defenses.detection_report(detector, clean[80:], attacked[80:])
    assert report["accuracy"] > 0.9 and report["auc"] > 0.95 and report["detected_attacks"] > 0.9
    blind = defenses.detection_report(detector, clean[80:], clean[:40])  # "attacks" that look clean
    assert blind["detected_attacks"] < 0.3 and 0.3 < blind["auc"] < 0.7
    with pytest.raises(ValueError, match="both classes"):
        defenses.fit_detector(clean, attacked[:0])
