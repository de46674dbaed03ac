"""A tiny multi-exit victim shared by the attack tests (random weights, simulated timing)."""

import jax
import numpy as np
import pytest

from mexjax import data, exits, nets, oracle


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
