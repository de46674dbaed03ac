"""Fake quantization: error bounds, straight-through gradients, PTQ close to float, QAT, save/load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import nets, train
from tests.train.test_fit import _toy

NET = dict(num_classes=4, num_exits=3, width=0.125)


def test_fake_quant_error_is_half_a_step_inside_the_range():
    x = jnp.linspace(-1.3, 2.7, 1001)
    for bits in (2, 4, 8):
        step = 4.0 / (2**bits - 1)
        y = nets.fake_quant(x, -1.3, 2.7, bits)
        assert float(jnp.max(jnp.abs(y - x))) <= step / 2 + 1e-5
        assert len(np.unique(np.round(np.asarray(y), 5))) <= 2**bits  # at most 2^b levels
    assert float(nets.fake_quant(jnp.float32(0.0), -1.3, 2.7, 8)) == 0.0  # zero is exact (padding, ReLU)
    clipped = nets.fake_quant(jnp.array([-5.0, 9.0]), -1.0, 2.0, 8)
    np.testing.assert_allclose(clipped, [-1.0, 2.0], atol=0.01)  # outside: clipped to the range
    only_positive = nets.fake_quant(jnp.array([0.0, 0.5, 3.0]), 0.5, 3.0, 8)  # range widened to reach 0
    np.testing.assert_allclose(only_positive, [0.0, 0.5, 3.0], atol=3.0 / 255)


def test_weight_quantization_is_symmetric_per_output_channel():
    w = (
        jax.random.normal(jax.random.key(0), (3, 3, 8, 5))
        * jnp.array([0.01, 0.1, 1.0, 10.0, 0.0])[None, None, None]
    )
    q = nets.fake_quant_weights(w, 8)
    peak = jnp.max(jnp.abs(w), axis=(0, 1, 2))
    step = jnp.where(peak > 0, peak / 127, 1.0)[None, None, None]
    assert bool(jnp.all(jnp.abs(q - w) <= step / 2 + 1e-7))  # per channel, scaled to its own range
    np.testing.assert_allclose(jnp.max(jnp.abs(q), axis=(0, 1, 2)), peak, rtol=1e-6)
    step = step[0, 0, 0]
    np.testing.assert_array_equal(nets.fake_quant_weights(-w, 8), -q)  # symmetric grid
    levels = np.unique(np.round(np.asarray(q[..., 2] / step[2]), 4))
    np.testing.assert_allclose(levels, np.round(levels))  # integers times the channel's step


def test_straight_through_gradients():
    x = jnp.array([-2.0, -0.5, 0.3, 0.9, 3.0])
    g = jax.grad(lambda v: jnp.sum(nets.fake_quant(v, -1.0, 1.0, 4) * jnp.arange(1.0, 6.0)))(x)
    np.testing.assert_allclose(g, [0.0, 2.0, 3.0, 4.0, 0.0])  # identity inside the range, 0 outside
    w = jnp.array([[0.2, -0.7], [0.4, 0.1]])
    gw = jax.grad(lambda v: jnp.sum(nets.fake_quant_weights(v, 8) * 3.0))(w)
    np.testing.assert_allclose(gw, jnp.full_like(w, 3.0))


def test_bad_quantization_input():
    net = nets.build("vgg16", **NET)
    for bits in (1, 17, 8.0):
        with pytest.raises(ValueError, match="2..16"):
            nets.quantize(net, weight_bits=bits)
    with pytest.raises(ValueError, match="activation_bits"):
        nets.quantize(net, activation_bits=0)
    variables = net.init(jax.random.key(0))
    q = nets.quantize(net)
    images = _toy(8).images
    with pytest.raises(ValueError, match="calibrate it first"):
        q.logits(variables, images)
    with pytest.raises(ValueError, match="empty"):
        nets.calibrate(q, variables, images[:0])
    with pytest.raises(ValueError, match="nothing to calibrate"):
        nets.calibrate(nets.quantize(net, activation_bits=None), variables, images)
    with pytest.raises(ValueError, match="calibrate it"):
        nets.save("/nonexistent/never-written", q, variables)


@pytest.fixture(scope="module")
def trained():
    net = nets.build("vgg16", **NET)
    ds = _toy(128)
    config = train.TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, milestones=(0.7,), flip=False)
    variables, _ = train.fit(net, ds, config, progress=False)
    return net, variables, ds


def _accuracy(net, variables, ds):
    return float(np.mean(train.predict(net, variables, ds.images)[-1].argmax(-1) == ds.labels))


def test_ptq_keeps_the_accuracy_of_a_trained_model_and_runs_early_exit(trained, tmp_path):
    net, variables, ds = trained
    test = _toy(96, seed=1)
    float_acc = _accuracy(net, variables, test)
    assert float_acc >= 0.9
    q8 = nets.quantize(net)
    v8 = nets.calibrate(q8, variables, ds.images[:64], batch_size=32)
    assert abs(_accuracy(q8, v8, test) - float_acc) <= 0.03
    float_logits, q_logits = net.logits(variables, test.images), q8.logits(v8, test.images)
    error8 = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(float_logits, q_logits, strict=True))
    q2 = nets.quantize(net, weight_bits=2, activation_bits=2)
    v2 = nets.calibrate(q2, variables, ds.images[:64])
    error2 = max(
        float(jnp.max(jnp.abs(a - b))) for a, b in zip(float_logits, q2.logits(v2, test.images), strict=True)
    )
    assert 0 < error8 < error2  # quantization changes the outputs, more so at fewer bits

    exits_b1 = [
        q8.runner().early_exit_single(v8, test.images[i : i + 1], np.array([0.6, 0.6]))[0] for i in range(8)
    ]
    exits_all, probs = q8.runner().early_exit_batched(v8, test.images[:8], np.array([0.6, 0.6]))
    np.testing.assert_array_equal(exits_b1, exits_all)  # the quantized net exits early like any other
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)

    nets.save(tmp_path / "q8", q8, v8)
    loaded, loaded_vars, _, _ = nets.load(tmp_path / "q8")
    assert (loaded.spec.weight_bits, loaded.spec.activation_bits) == (8, 8)
    np.testing.assert_array_equal(loaded.logits(loaded_vars, test.images)[-1], q_logits[-1])


def test_qat_trains_the_quantized_net_and_keeps_its_ranges(trained):
    net, variables, ds = trained
    q4 = nets.quantize(net, weight_bits=4, activation_bits=4)
    v4 = nets.calibrate(q4, variables, ds.images[:64])
    before = _accuracy(q4, v4, ds)
    config = train.TrainConfig(epochs=2, batch_size=16, learning_rate=0.01, flip=False)
    tuned, history = train.fit(q4, ds, config, variables=v4, progress=False)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, tuned["quant"], v4["quant"]))
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), tuned["params"], v4["params"])
    assert any(jax.tree_util.tree_leaves(changed))  # gradients reached the float weights (STE)
    assert _accuracy(q4, tuned, ds) >= before - 0.02 and np.isfinite(history[-1]["train_loss"])
