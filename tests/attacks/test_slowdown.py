"""DeepSloth on the tiny victim: the loss, the PGD bounds, and that it slows the victim down."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import metrics, nets
from mexjax.attacks import slowdown


def _mean_loss(net, variables, images):
    return float(jnp.mean(slowdown.deepsloth_loss(net.apply(variables, jnp.asarray(images)))))


def test_loss_is_cross_entropy_to_uniform_at_the_internal_classifiers():
    z = jnp.asarray([[2.0, 0.0, 0.0, 0.0]], jnp.float32)
    flat = jnp.zeros((1, 4), jnp.float32)
    final = jnp.asarray([[100.0, 0.0, 0.0, 0.0]], jnp.float32)  # the final exit does not count
    log_p = np.log(np.exp([2.0, 0, 0, 0]) / np.exp([2.0, 0, 0, 0]).sum())
    got = float(slowdown.deepsloth_loss([z, flat, final])[0])
    assert got == pytest.approx(-log_p.mean() + np.log(4), rel=1e-5)
    with pytest.raises(ValueError, match="multi-exit"):
        slowdown.deepsloth_loss([z])


@pytest.mark.parametrize("norm, eps, step", [("linf", 8 / 255, 2 / 255), ("l2", 1.0, 0.2)])
def test_pgd_respects_its_bound_and_slows_the_victim(victim_setup, norm, eps, step):
    net, variables, thresholds, queries, _ = victim_setup
    images = queries[:48]
    config = slowdown.SlothConfig(norm=norm, eps=eps, step=step, steps=10, batch_size=32)  # 2 chunks, padded
    adv = slowdown.attack(net, variables, images, config, progress=False)
    x = images.astype(np.float32) / 255
    assert adv.shape == x.shape and adv.dtype == np.float32 and adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= eps + 1e-4
    assert _mean_loss(net, variables, adv) < _mean_loss(net, variables, x) - 1e-3
    runner = net.runner()
    clean_exits, _ = runner.early_exit_batched(variables, x, thresholds)
    adv_exits, _ = runner.early_exit_batched(variables, adv, thresholds)
    flops = nets.exit_flops(net)
    before, after = metrics.efficacy(clean_exits, flops), metrics.efficacy(adv_exits, flops)
    assert after < 0.5 * before, (before, after)


def test_universal_perturbation_is_one_bounded_delta_that_raises_the_cost(victim_setup):
    net, variables, _, queries, _ = victim_setup
    delta = slowdown.universal(
        net, variables, queries[:64], eps=8 / 255, step=0.005, epochs=3, batch_size=32, progress=False
    )
    assert delta.shape == net.input_shape and np.abs(delta).max() <= 8 / 255 + 1e-6
    held_out = queries[64:128]
    adv = slowdown.apply_universal(held_out, delta)
    x = held_out.astype(np.float32) / 255
    assert _mean_loss(net, variables, adv) < _mean_loss(net, variables, x)


def test_bad_input():
    with pytest.raises(ValueError, match="eps > 0"):
        slowdown.SlothConfig(eps=0.0)
    with pytest.raises(ValueError, match="norm"):
        slowdown.SlothConfig(norm="l1")
    single = nets.build("vgg16", num_classes=3, num_exits=2, width=0.125)
    variables = single.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slowdown.attack(single, variables, np.full((2, 32, 32, 3), 2.0, np.float32), progress=False)


def test_adaptive_attack_models_the_detector_and_evades_it(victim_setup):
    from mexjax import defenses, train

    net, variables, _, queries, _ = victim_setup
    config = slowdown.SlothConfig(steps=10, batch_size=32)
    clean = queries[:96].astype(np.float32) / 255
    plain = slowdown.attack(net, variables, clean, config, progress=False)
    feats = [defenses.exit_features(train.predict(net, variables, im)) for im in (clean, plain)]
    detector = defenses.fit_detector(feats[0][:64], feats[1][:64])
    params = slowdown.svm_parameters(detector)
    np.testing.assert_allclose(
        np.asarray(slowdown.svm_decision(params, jnp.asarray(feats[1]))), detector.score(feats[1]), atol=1e-3
    )
    adaptive = slowdown.adaptive_attack(net, variables, clean[64:], detector, config, weight=10.0)
    adaptive_feats = defenses.exit_features(train.predict(net, variables, adaptive))
    caught_plain = defenses.detection_report(detector, feats[0][64:], feats[1][64:])["detected_attacks"]
    caught_adaptive = defenses.detection_report(detector, feats[0][64:], adaptive_feats)["detected_attacks"]
    assert caught_plain > 0.5 and caught_adaptive < caught_plain - 0.3, (caught_plain, caught_adaptive)
    assert np.abs(adaptive - clean[64:]).max() <= config.eps + 1e-6


def test_black_box_transfer_from_a_surrogate(victim_setup):
    """The attacker holds a surrogate (here: the victim's architecture with its weights perturbed by 5 %,
    as a stolen copy differs from the original) and attacks that; the victim only sees the images."""
    net, variables, thresholds, queries, _ = victim_setup
    leaves, tree = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(jax.random.key(5), len(leaves))
    noisy = [
        leaf * (1 + 0.05 * jax.random.normal(k, leaf.shape)) for leaf, k in zip(leaves, keys, strict=True)
    ]
    surrogate = {**variables, "params": jax.tree_util.tree_unflatten(tree, noisy)}
    images = queries[:48]
    adv = slowdown.attack(net, surrogate, images, slowdown.SlothConfig(steps=10), progress=False)
    x = images.astype(np.float32) / 255
    runner, flops = net.runner(), nets.exit_flops(net)
    before = metrics.efficacy(runner.early_exit_batched(variables, x, thresholds)[0], flops)
    after = metrics.efficacy(runner.early_exit_batched(variables, adv, thresholds)[0], flops)
    assert after < 0.7 * before, (before, after)
