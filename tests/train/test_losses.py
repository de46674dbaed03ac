"""Per-example losses and the SDN loss-weight schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import train


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 2], np.int32)
    ref = -np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[np.arange(5), labels]
    got = np.asarray(train.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
    assert got.shape == (5,)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_soft_cross_entropy_of_one_hot_is_cross_entropy():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6)), jnp.float32)
    labels = jnp.asarray([5, 0, 2], jnp.int32)
    one_hot = jnp.eye(6, dtype=jnp.float32)[labels]
    np.testing.assert_allclose(
        np.asarray(train.soft_cross_entropy(logits, one_hot)),
        np.asarray(train.cross_entropy(logits, labels)),
        rtol=1e-6,
    )


def test_sdn_schedule():
    assert train.sdn_max_weights(6) == (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)
    start = train.sdn_weights(0, 100, 7)
    np.testing.assert_allclose(start, [0.01] * 6 + [1.0])
    middle = train.sdn_weights(50, 100, 7)
    caps = np.array([0.15, 0.3, 0.45, 0.6, 0.75, 0.9])
    np.testing.assert_allclose(middle[:-1], np.minimum(caps, 0.01 + 0.5 * caps), rtol=1e-6)
    end = train.sdn_weights(99, 100, 7)
    np.testing.assert_allclose(end[:-1], caps, rtol=1e-6)  # 0.01 + 0.99 C >= C for C <= 1
    assert train.sdn_weights(3, 10, 3).shape == (3,) and train.sdn_max_weights(2) == (0.45, 0.9)


def test_sdn_loss_is_the_weighted_sum():
    rng = np.random.default_rng(2)
    logits = tuple(jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(3))
    labels = jnp.asarray([0, 1, 2, 0], jnp.int32)
    weights = jnp.asarray([0.2, 0.5, 1.0], jnp.float32)
    got = np.asarray(train.sdn_loss(logits, labels, weights))
    ref = sum(
        float(w) * np.asarray(train.cross_entropy(lg, labels)) for w, lg in zip(weights, logits, strict=True)
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="recipe"):
        train.TrainConfig(recipe="adamw")
    assert train.TrainConfig().lr == 0.1 and train.TrainConfig(recipe="ic_only").lr == 1e-3
    assert train.TrainConfig(recipe="ic_only").lr_milestones == (0.6,)


def test_kl_divergence_matches_scipy_and_stays_finite_on_one_hot_targets():
    from scipy.special import rel_entr, softmax

    logits = jax.random.normal(jax.random.key(3), (4, 6))
    target = jax.nn.softmax(jax.random.normal(jax.random.key(4), (4, 6)), axis=-1)
    want = rel_entr(np.asarray(target, np.float64), softmax(np.asarray(logits, np.float64), axis=-1)).sum(-1)
    np.testing.assert_allclose(train.kl_divergence(target, logits), want, rtol=1e-5, atol=1e-6)
    one_hot = jax.nn.one_hot(jnp.array([0, 5, 2, 2]), 6)
    kl = train.kl_divergence(one_hot, logits)  # = cross-entropy for a one-hot target
    np.testing.assert_allclose(kl, train.cross_entropy(logits, jnp.array([0, 5, 2, 2])), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(kl)))
