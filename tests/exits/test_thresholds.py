"""Choosing a victim's global threshold the SDN way, against a brute-force reference."""

import numpy as np
import pytest

from mexjax import exits


def _probs(seed=0, k=3, n=200, c=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(k, n, c)) * np.array([1.0, 2.0, 4.0])[:k, None, None]
    labels = rng.integers(0, c, n)
    logits[np.arange(k)[:, None], np.arange(n)[None, :], labels[None, :]] += np.array([0.5, 1.5, 3.0])[
        :k, None
    ]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probs.astype(np.float32), labels.astype(np.int32)


def _accuracy(probs, labels, q):
    conf = probs.max(-1)
    exits_ = np.full(probs.shape[1], probs.shape[0] - 1)
    for i in range(probs.shape[0] - 2, -1, -1):
        exits_ = np.where(conf[i] >= q, i, exits_)
    predicted = probs[exits_, np.arange(probs.shape[1])].argmax(-1)
    return (predicted == labels).mean(), exits_


@pytest.mark.parametrize("max_drop", [0.0, 0.02, 0.1])
def test_global_threshold_matches_brute_force(max_drop):
    probs, labels = _probs()
    choice = exits.sdn_global_threshold(probs, labels, max_drop=max_drop)
    final = (probs[-1].argmax(-1) == labels).mean()
    grid = np.round(np.arange(0.30, 1.0, 0.01), 2).astype(np.float32)  # SDN's grid, written out here
    np.testing.assert_array_equal(choice.candidates, grid)
    expected = next((q for q in grid if _accuracy(probs, labels, q)[0] >= final - max_drop - 1e-7), grid[-1])
    assert choice.threshold == pytest.approx(expected)
    assert choice.final_accuracy == pytest.approx(final)
    acc, exits_ = _accuracy(probs, labels, choice.threshold)
    assert choice.accuracy == pytest.approx(acc)
    assert choice.thresholds.shape == (2,) and np.all(choice.thresholds == np.float32(choice.threshold))
    i = int(np.nonzero(choice.candidates == np.float32(choice.threshold))[0][0])
    np.testing.assert_allclose(choice.candidate_exit_share[i], np.bincount(exits_, minlength=3) / len(labels))


def test_looser_rule_gives_earlier_exits():
    probs, labels = _probs(1)
    strict = exits.sdn_global_threshold(probs, labels, max_drop=0.0)
    loose = exits.sdn_global_threshold(probs, labels, max_drop=0.2)
    assert loose.threshold <= strict.threshold


def test_threshold_choice_rejects_bad_input():
    probs, labels = _probs()
    with pytest.raises(ValueError, match="need probs"):
        exits.sdn_global_threshold(probs[0], labels)
    with pytest.raises(ValueError, match="max_drop"):
        exits.sdn_global_threshold(probs, labels, max_drop=-0.1)
    with pytest.raises(ValueError, match="candidates"):
        exits.sdn_global_threshold(probs, labels, candidates=[1.5])
