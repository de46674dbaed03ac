"""Metrics on hand-made cases with known values."""

import itertools

import numpy as np
import pytest

from mexjax import metrics


def test_label_and_exit_metrics():
    victim_labels = np.array([0, 1, 2, 1])
    victim_exits = np.array([0, 0, 1, 2])
    student_labels = np.array([0, 1, 1, 1])
    student_exits = np.array([0, 1, 1, 2])
    assert metrics.accuracy(student_labels, np.array([0, 1, 2, 2])) == 0.5
    assert metrics.fidelity(student_labels, victim_labels) == 0.75
    assert metrics.exit_agreement(student_exits, victim_exits) == 0.75
    assert (
        metrics.closeness(student_labels, student_exits, victim_labels, victim_exits) == 0.5
    )  # samples 0 and 3


def test_mean_flops():
    assert metrics.mean_flops(np.array([0, 2, 2, 1]), [10, 20, 40]) == pytest.approx(27.5)
    with pytest.raises(ValueError, match="exit costs"):
        metrics.mean_flops(np.array([3]), [10, 20, 40])


def test_exit_prediction_balanced_and_confusion():
    true = np.array([0, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    est = np.array([1, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    result = metrics.exit_prediction(est, true)
    assert result["accuracy"] == 0.9
    assert result["balanced_accuracy"] == pytest.approx((0 + 1 + 1) / 3)  # exit 0 entirely missed
    assert result["confusion"] == [[0, 1, 0], [0, 1, 0], [0, 0, 8]]
    wider = metrics.exit_prediction(np.array([0, 3]), np.array([0, 1]))  # an extra estimated exit
    assert np.array(wider["confusion"]).shape == (2, 4) and wider["recall_per_exit"] == [1.0, 0.0]


def test_metric_input_errors():
    with pytest.raises(ValueError, match="one length"):
        metrics.fidelity(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy(np.zeros(0), np.zeros(0))


def test_efficacy_hand_cases():
    flops = [1, 2, 4]  # normalized costs 0.25, 0.5, 1
    assert metrics.efficacy(np.array([2, 2, 2]), flops) == 0.0  # everything runs the whole network
    assert metrics.efficacy(np.array([0, 0]), flops) == pytest.approx(0.75)  # all leave at cost 0.25
    # half at exit 0, a quarter at 1, a quarter at 2: 0.5 * 0.75 + 0.25 * 0.5 + 0.25 * 0
    assert metrics.efficacy(np.array([0, 0, 1, 2]), flops) == pytest.approx(0.5)
    x, y = metrics.efficacy_curve(np.array([0, 0, 1, 2]), flops)
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    np.testing.assert_allclose(np.unique(y), [0, 0.5, 0.75, 1.0])
    assert metrics.efficacy(np.array([0]), [1e-9, 1.0]) == pytest.approx(1.0)  # a free first exit
    with pytest.raises(ValueError, match="increasing"):
        metrics.efficacy(np.array([0]), [2, 1])
    with pytest.raises(ValueError, match="exit costs"):
        metrics.efficacy(np.array([3]), flops)


def test_aligned_exit_prediction_forgives_only_the_shift_of_a_missed_exit():
    true = np.array([0] * 50 + [1] * 2 + [2] * 30 + [3] * 40)
    estimated = np.array([0] * 50 + [0] * 2 + [1] * 30 + [2] * 40)  # exit 1 (2 queries) missed
    p = metrics.exit_prediction(estimated, true)
    assert p["accuracy"] == pytest.approx(50 / 122)  # every query after the missed exit is off by one
    assert p["alignment"] == [0, 2, 3]
    assert p["aligned_accuracy"] == pytest.approx(120 / 122)
    assert p["aligned_balanced_accuracy"] == pytest.approx(3 / 4)  # exit 1 is still not recalled
    merged = np.array([0] * 50 + [0] * 2 + [0] * 30 + [1] * 40)  # exits 0-2 in one hump
    q = metrics.exit_prediction(merged, true)
    assert q["alignment"] == [0, 3] and q["aligned_accuracy"] == pytest.approx(90 / 122)
    perfect = metrics.exit_prediction(true, true)
    assert perfect["aligned_accuracy"] == perfect["accuracy"] == 1.0 and perfect["alignment"] == [0, 1, 2, 3]
    split = metrics.exit_prediction(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1]))  # a hump split in two
    assert split["alignment"] == [0, 0, 1] and split["aligned_accuracy"] == 1.0


def _brute_boundary(runtimes, true):
    """All ways to cut the sorted queries into K ordered (possibly empty) intervals."""
    order = np.argsort(runtimes, kind="stable")
    t = true[order]
    k, n = int(true.max()) + 1, len(t)
    counts = np.bincount(true, minlength=k)
    best = (0.0, 0.0)
    for cuts in itertools.combinations_with_replacement(range(n + 1), k - 1):
        est = np.searchsorted(np.asarray(cuts), np.arange(n), side="right")
        hits = est == t
        balanced = np.mean([hits[t == e].mean() for e in range(k) if counts[e]])
        best = (max(best[0], hits.mean()), max(best[1], balanced))
    return best


def test_best_boundary_accuracy_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, k = int(rng.integers(2, 10)), int(rng.integers(2, 4))
        true = rng.integers(0, k, n)
        runtimes = true + rng.normal(0, 0.8, n)  # overlapping humps
        got = metrics.best_boundary_accuracy(runtimes, true)
        plain, balanced = _brute_boundary(runtimes, true)
        assert got["accuracy"] == pytest.approx(plain) and got["balanced_accuracy"] == pytest.approx(balanced)


def test_best_boundary_accuracy_known_cases():
    true = np.array([0, 0, 1, 1, 2])
    assert metrics.best_boundary_accuracy([1.0, 1.1, 2.0, 2.1, 3.0], true)["accuracy"] == 1.0
    # exit 1's slow query sits after exit 2's: one of the two must be wrong
    result = metrics.best_boundary_accuracy([1.0, 1.1, 2.0, 3.5, 3.0], true)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    with pytest.raises(ValueError, match="equal length"):
        metrics.best_boundary_accuracy([1.0, 2.0], [0])
    with pytest.raises(ValueError, match="finite"):
        metrics.best_boundary_accuracy([1.0, np.nan], [0, 1])


def test_evaluate_runs_a_deployed_model_under_its_own_policy_and_defense():
    """Hand-computable cases: threshold 0 sends every image out at exit 1, no thresholds run the whole
    net; a model compared with itself agrees everywhere; an output defense that reverses the classes
    turns every answer wrong against labels taken from the undefended answers."""
    import jax

    from mexjax import defenses, nets, oracle

    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    flops = np.asarray(nets.exit_flops(net), np.float64)

    first = oracle.DeployedModel(net, variables, np.zeros(2, np.float32))
    scores = metrics.evaluate(first, images)
    assert scores["exit_histogram"] == [20, 0, 0] and scores["mean_flops"] == flops[0]
    assert scores["flops_ratio"] == flops[0] / flops[-1]
    assert scores["efficacy"] == pytest.approx(1 - flops[0] / flops[-1])

    whole = oracle.DeployedModel(net, variables)
    exits, probs = whole.answer(images)
    assert np.all(exits == 2)
    labels = probs.argmax(-1)
    scores = metrics.evaluate(whole, images, labels, reference=whole)
    assert scores["exit_histogram"] == [0, 0, 20] and scores["efficacy"] == 0.0
    assert scores["accuracy"] == 1.0 and scores["reference_accuracy"] == 1.0
    assert scores["fidelity"] == scores["closeness"] == scores["exit_agreement"] == 1.0

    scores = metrics.evaluate(first, images, labels, reference=whole)
    assert scores["exit_agreement"] == 0.0 and scores["closeness"] == 0.0  # exits never match
    assert scores["reference_exit_histogram"] == [0, 0, 20]

    reverse = defenses.OutputDefense(init=lambda: None, apply=lambda p, state: (p[:, ::-1], state))
    guarded = oracle.DeployedModel(net, variables, defense=reverse)
    flipped = guarded.answer(images)[1]
    np.testing.assert_array_equal(flipped, probs[:, ::-1])
    assert np.all(probs.max(-1) > np.sort(probs, -1)[:, -2])  # no ties: the reversed argmax is 3 - label
    assert metrics.evaluate(guarded, images, labels)["accuracy"] == 0.0
