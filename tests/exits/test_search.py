"""Output-strategy search: exact on small instances, never worse than greedy, recovers a true policy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mexjax import exits


def _instance(seed, n, k, *, realizable=False, noise=0.0):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.2, 1.0, (n, k)).astype(np.float32)
    if realizable:
        hidden = np.sort(rng.uniform(0.5, 0.95, k - 1)).astype(np.float32)
        targets = np.array(exits.assign(conf, hidden))
        flip = rng.uniform(size=n) < noise
        targets[flip] = rng.integers(0, k, flip.sum())
    else:
        targets = rng.integers(0, k, n)
    return conf, targets.astype(np.int32)


def _own_exits(conf, thresholds):
    """Each query's exit under thresholds, by a plain loop: the first exit whose confidence reaches
    its threshold, else the last."""
    k = conf.shape[1]
    return np.array([next((j for j in range(k - 1) if row[j] >= thresholds[j]), k - 1) for row in conf])


def _own_score(conf, targets, thresholds, match=None):
    exits_ = _own_exits(conf, thresholds)
    hit = exits_ == targets
    if match is not None:
        hit &= match[np.arange(len(targets)), exits_]
    return int(hit.sum())


def _own_threshold_grid(conf):
    """Every combination of thresholds that matters, enumerated here without the library: for each
    exit, every distinct confidence value at it, and 1.0 (no query leaves: the instances' confidences
    are below 1). [C, K-1]"""
    k = conf.shape[1]
    options = [np.append(np.unique(conf[:, i]), np.float32(1.0)) for i in range(k - 1)]
    return np.stack(np.meshgrid(*options, indexing="ij"), -1).reshape(-1, k - 1)


def _own_optimum(conf, targets, match=None):
    """The best score over `_own_threshold_grid`, scored for all combinations at once with numpy."""
    k = conf.shape[1]
    grid = _own_threshold_grid(conf)
    exits_ = np.full((len(grid), len(targets)), k - 1)
    for j in range(k - 2, -1, -1):
        exits_ = np.where(conf[None, :, j] >= grid[:, j : j + 1], j, exits_)
    hit = exits_ == targets[None, :]
    if match is not None:
        hit &= match[np.arange(len(targets))[None, :], exits_]
    return int(hit.sum(axis=1).max())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(2, 4))
def test_search_reaches_an_independently_enumerated_optimum(seed, n, k):
    conf, targets = _instance(seed, n, k)
    found = exits.search_thresholds(conf, targets)
    assert _own_score(conf, targets, found) == _own_optimum(conf, targets)
    match = np.random.default_rng(seed + 1).uniform(size=(n, k)) < 0.7
    found = exits.search_thresholds(conf, targets, label_match=match)
    assert _own_score(conf, targets, found, match) == _own_optimum(conf, targets, match)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(2, 4))
def test_vectorized_reaches_the_brute_force_optimum(seed, n, k):
    conf, targets = _instance(seed, n, k)
    best = exits.objective(conf, targets, exits.brute_force(conf, targets))
    found = exits.search_thresholds(conf, targets)
    assert exits.objective(conf, targets, found) == best
    assert np.all((found >= 0) & (found <= 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(2, 4))
def test_label_matching_option_reaches_the_optimum(seed, n, k):
    conf, targets = _instance(seed, n, k)
    match = np.random.default_rng(seed + 1).uniform(size=(n, k)) < 0.7
    best = exits.objective(conf, targets, exits.brute_force(conf, targets, label_match=match), match)
    found = exits.search_thresholds(conf, targets, label_match=match)
    assert exits.objective(conf, targets, found, match) == best


@pytest.mark.parametrize("seed", range(6))
def test_ascent_is_never_worse_than_greedy(seed):
    conf, targets = _instance(seed, 400, 6, realizable=True, noise=0.3)
    start = exits.greedy(conf, targets)
    improved = exits.coordinate_ascent(conf, targets, start)
    assert exits.objective(conf, targets, improved) >= exits.objective(conf, targets, start)
    assert exits.objective(conf, targets, exits.search_thresholds(conf, targets, method="ascent")) == (
        exits.objective(conf, targets, improved)
    )


def test_ascent_recovers_a_noise_free_policy():
    conf, targets = _instance(7, 2000, 6, realizable=True)
    found = exits.search_thresholds(conf, targets, method="ascent")
    assert exits.objective(conf, targets, found) == len(targets)


def test_ascent_matches_brute_force_on_most_small_instances():
    hits = 0
    for seed in range(30):
        conf, targets = _instance(seed, 25, 4)
        best = exits.objective(conf, targets, exits.brute_force(conf, targets))
        hits += (
            exits.objective(conf, targets, exits.search_thresholds(conf, targets, method="ascent")) == best
        )
    assert hits >= 25  # coordinate ascent is a local method: exact on most, not all, random instances


def test_candidates_follow_the_interval_rule():
    conf = np.array([[0.9, 0.5], [0.8, 0.5], [0.6, 0.5], [0.95, 0.5]], np.float32)
    targets = np.array([0, 0, 1, 1], np.int32)
    c = exits.candidates(conf, targets, 0)
    assert c.min() == np.float32(0.8) and c.max() > np.float32(0.95)  # from min Conf_0 to above max Conf̄_0
    assert np.float32(0.6) not in c


@pytest.mark.parametrize(
    ("conf", "targets", "message"),
    [
        (np.full((3, 2), 1.5, np.float32), np.zeros(3, np.int32), "within \\[0, 1\\]"),
        (np.full((3,), 0.5, np.float32), np.zeros(3, np.int32), "\\[N, K\\]"),
        (np.full((3, 2), 0.5, np.float32), np.zeros(4, np.int32), "target_exits"),
        (np.full((3, 2), 0.5, np.float32), np.full(3, 2, np.int32), "0..1"),
        (np.full((3, 2), np.nan, np.float32), np.zeros(3, np.int32), "finite"),
    ],
)
def test_bad_input(conf, targets, message):
    with pytest.raises(ValueError, match=message):
        exits.search_thresholds(conf, targets)


def test_unknown_method():
    conf, targets = _instance(0, 5, 2)
    with pytest.raises(ValueError, match="method"):
        exits.search_thresholds(conf, targets, method="anneal")


def _tied_instance(seed, n, k, levels):
    """Confidences on a coarse grid (many ties), random targets and label matches."""
    rng = np.random.default_rng(seed)
    conf = (rng.integers(0, levels + 1, (n, k)) / levels).astype(np.float32)
    return conf, rng.integers(0, k, n).astype(np.int32), rng.uniform(size=(n, k)) < 0.7


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.sampled_from([3, 20, 1000]))
def test_batched_scores_equal_a_loop_over_candidates(seed, n, levels):
    from mexjax.exits import _search

    rng = np.random.default_rng(seed)
    conf = (rng.integers(0, levels + 1, n) / levels).astype(np.float32)
    a, b = rng.uniform(size=n) < 0.4, rng.uniform(size=n) < 0.5
    cand = np.unique(np.concatenate([conf, rng.uniform(size=5)]).astype(np.float32))  # some not in conf
    loop = [int(np.sum(np.where(conf >= c, a, b))) for c in cand]
    assert _search._scores(conf, a, b, cand).tolist() == loop
    assert _search._scores(conf, a.astype(np.int32), b.astype(np.int32), cand).tolist() == loop


def _hits(conf, targets, thresholds, match):
    exits_ = np.full(len(targets), conf.shape[1] - 1)
    for j in range(len(thresholds) - 1, -1, -1):
        exits_ = np.where(conf[:, j] >= thresholds[j], j, exits_)
    hit = exits_ == targets
    return int(np.sum(hit & match[np.arange(len(targets)), exits_] if match is not None else hit))


def _plain_greedy(conf, targets, match):
    """Greedy in plain loops: every candidate of exit i scored over the queries reaching i."""
    t = np.ones(conf.shape[1] - 1, np.float32)
    for i in range(len(t)):
        reach = np.all(conf[:, :i] < t[:i], axis=1)
        right = (targets == i) & (match[:, i] if match is not None else True)
        cands = exits.candidates(conf, targets, i)
        scores = [np.sum(reach & np.where(conf[:, i] >= c, right, targets > i)) for c in cands]
        t[i] = cands[int(np.argmax(scores))]
    return t


def _plain_ascent(conf, targets, start, match, max_sweeps=20):
    """Coordinate ascent in plain loops: every candidate of every exit scored by the full objective,
    every exit re-evaluated in every sweep."""
    t = np.asarray(start, np.float32).copy()
    best = _hits(conf, targets, t, match)
    for _ in range(max_sweeps):
        improved = False
        for i in range(len(t)):
            cands = np.union1d(exits.candidates(conf, targets, i), [t[i]]).astype(np.float32)
            scores = []
            for c in cands:
                trial = t.copy()
                trial[i] = c
                scores.append(_hits(conf, targets, trial, match))
            j = int(np.argmax(scores))
            if scores[j] > best:
                t[i], best, improved = cands[j], scores[j], True
        if not improved:
            break
    return t


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60), st.integers(2, 5), st.sampled_from([4, 50]), st.booleans())
def test_greedy_and_ascent_equal_their_plain_loop_versions(seed, n, k, levels, use_match):
    conf, targets, match = _tied_instance(seed, n, k, levels)
    match = match if use_match else None
    start = exits.greedy(conf, targets, match)
    np.testing.assert_array_equal(start, _plain_greedy(conf, targets, match))
    np.testing.assert_array_equal(
        exits.coordinate_ascent(conf, targets, start, match), _plain_ascent(conf, targets, start, match)
    )
    anywhere = np.random.default_rng(seed).uniform(size=k - 1).astype(np.float32)  # any start, 2 sweeps
    np.testing.assert_array_equal(
        exits.coordinate_ascent(conf, targets, anywhere, match, max_sweeps=2),
        _plain_ascent(conf, targets, anywhere, match, max_sweeps=2),
    )


# ---- balanced: each target exit's queries weigh one equal share -----------------------------------
def _own_balanced_score(conf, targets, thresholds) -> float:
    """Balanced share of hits, by the test's own loop: mean over the target exits present of the share
    of their queries that exit there."""
    exits_ = _own_exits(conf, thresholds)
    return float(np.mean([np.mean(exits_[targets == e] == e) for e in np.unique(targets)]))


def _own_balanced_optimum(conf, targets) -> float:
    return max(_own_balanced_score(conf, targets, t) for t in _own_threshold_grid(conf))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 10), st.integers(2, 3))
def test_balanced_search_reaches_an_independently_enumerated_optimum(seed, n, k):
    conf, targets = _instance(seed, n, k)
    for method in ("auto", "brute"):
        found = exits.search_thresholds(conf, targets, balanced=True, method=method)
        # the library weighs queries by integers (1e6 / count): equal to the exact shares within 1e-5
        assert _own_balanced_score(conf, targets, found) >= _own_balanced_optimum(conf, targets) - 1e-5


@pytest.mark.parametrize("seed", range(4))
def test_balanced_ascent_is_never_worse_than_its_greedy_start(seed):
    conf, targets = _instance(seed, 400, 6, realizable=True, noise=0.3)
    start = exits.greedy(conf, targets, balanced=True)
    improved = exits.coordinate_ascent(conf, targets, start, balanced=True)
    assert _own_balanced_score(conf, targets, improved) >= _own_balanced_score(conf, targets, start) - 1e-9
    assert (
        _own_balanced_score(conf, targets, improved)
        > _own_balanced_score(conf, targets, exits.search_thresholds(conf, targets, method="ascent")) - 1e-9
    )  # the plain count's optimum is no better on the balanced score


def test_balanced_keeps_a_sparse_exit_that_the_plain_count_gives_up():
    """10 queries leave at exit 0 (confidence 0.9 there); of the 90 that go on, 65 are unsure at exit 0
    (0.5) and 25 sure (0.95). Counted per query, letting exit 0 catch its 10 costs 25: the plain optimum
    keeps every query to the last exit (90 of 100). Each exit's queries weighed equally: T = 0.9 gets
    10/10 and 65/90 (1.72 of 2) against 0/10 and 90/90 (1.0)."""
    conf = np.stack(
        [np.r_[np.full(10, 0.9), np.full(65, 0.5), np.full(25, 0.95)], np.full(100, 0.99)], axis=1
    ).astype(np.float32)
    targets = np.r_[np.zeros(10), np.ones(90)].astype(np.int32)
    plain = exits.search_thresholds(conf, targets)
    balanced = exits.search_thresholds(conf, targets, balanced=True)
    assert plain[0] > np.float32(0.95) and _own_score(conf, targets, plain) == 90
    assert balanced[0] == np.float32(0.9) and _own_score(conf, targets, balanced) == 75
    for method in ("exhaustive", "ascent", "greedy", "brute"):
        assert exits.search_thresholds(conf, targets, balanced=True, method=method)[0] == np.float32(0.9)
    weights = exits.exit_weights(targets, 2, balanced=True)
    assert weights[0] == 100_000 and weights[-1] == round(1_000_000 / 90)
    assert exits.objective(conf, targets, balanced, weights=weights) == 10 * 100_000 + 65 * 11_111
