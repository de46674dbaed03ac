"""A tiny multi-exit victim shared by the attack tests (random weights, simulated timing)."""

import jax
import numpy as np
import pytest

from mexjax import data, exits, nets, oracle, train
from tests.train.test_fit import _toy


@pytest.fixture(scope="module")
def victim_setup():
    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    queries = data.noise_images(jax.random.key(1), 160, (32, 32, 3))
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, queries)))
    thresholds = np.array([np.quantile(conf[0], 0.6), np.quantile(conf[1], 0.5)], np.float32)
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-9, scale=0.02)
    return net, variables, thresholds, queries, timing


def tiny_oracle(setup, budget=10_000, output="probs"):
    net, variables, thresholds, _, timing = setup
    return oracle.Oracle(net, variables, thresholds, budget=budget, timing=timing, output=output)


@pytest.fixture(scope="session")
def toy_victim():
    """A tiny victim trained on the 4-class toy task (learnable in seconds), and its test set."""
    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    config = train.TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, milestones=(0.7,), flip=False)
    variables, _ = train.fit(net, _toy(128), config, progress=False)
    return net, variables, _toy(200, seed=1)
