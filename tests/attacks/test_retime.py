"""Adaptive re-timing (`steal.retime.adaptive_timing`): the budget it spends and what it buys."""

import jax
import numpy as np
import pytest

from mexjax import exits, nets, oracle
from mexjax.attacks import steal


@pytest.fixture(scope="module")
def victim():
    net = nets.build("vgg16", num_classes=5, num_exits=4, width=0.125)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (400, 32, 32, 3), dtype=np.uint8)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, images)))
    thresholds = np.array([np.quantile(conf[i], q) for i, q in enumerate([0.75, 0.66, 0.5])], np.float32)
    return net, variables, thresholds, images


def _oracle(victim, budget, seed):
    net, variables, thresholds, _ = victim
    # noisy timing: 30 % of the answers slowed 2-5x, lognormal jitter of 10 %
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-9, scale=0.1, outliers=0.3)
    return oracle.Oracle(net, variables, thresholds, budget=budget, timing=timing, key=jax.random.key(seed))


def test_adaptive_spends_the_same_budget_on_the_doubtful(victim):
    """At 3 queries per image, re-timing spends at most that (it stops early once every image is
    confident), one pass on every image and the rest on the images whose first time was the least
    confident."""
    _, _, _, images = victim
    o = _oracle(victim, 3 * len(images), 0)
    answers = steal.retime.adaptive_timing(o, images, total_passes=3)
    assert len(images) < o.used <= 3 * len(images) and answers.passes.sum() == o.used
    assert not answers.exhausted
    assert answers.passes.min() == 1 and answers.passes.max() > 3 and answers.rounds >= 8
    # the first pass again (same key): what the attacker knew before re-timing
    first = _oracle(victim, len(images), 0).query(images, passes=1).runtimes
    confidence = exits.analyse_timing(first, drift=False).confidence
    retimed = answers.passes > 1
    assert confidence[retimed].mean() < confidence[~retimed].mean()
    assert np.all(answers.runtimes <= first + 1e-12)  # the fastest time only improves


def test_adaptive_stops_cleanly_when_the_budget_runs_out(victim):
    _, _, _, images = victim
    o = _oracle(victim, len(images) + 50, 0)  # one pass each and 50 repeats
    answers = steal.retime.adaptive_timing(o, images, total_passes=3)
    assert answers.exhausted and o.used == len(images) + 50 and len(answers) == len(images)


def test_adaptive_arguments(victim):
    _, _, _, images = victim
    with pytest.raises(ValueError, match="total_passes"):
        steal.retime.adaptive_timing(_oracle(victim, 10, 0), images[:5], total_passes=0.5)
    with pytest.raises(ValueError, match="confident"):
        steal.retime.adaptive_timing(_oracle(victim, 10, 0), images[:5], confident=0)
