"""Output-strategy search: thresholds that make a student exit where the victim did.

Given the student's confidences c[x, i] on the queries and each query's target exit e(x) (estimated
from the victim's timing), maximize over thresholds T the number of queries with exit_T(x) = e(x)
(option: and the same label as the victim at that exit).

Candidates for T_i are the confidences at exit i within [min Conf_i, max Conf̄_i] (METHODS §3.6;
Conf_i: of queries targeted at exit i, Conf̄_i: of the others), plus the value just above max Conf̄_i
(nobody else leaves at i). With the other thresholds fixed, the objective as a function of T_i is

    const + Σ_{x reaching i} [c_i(x) >= T_i]·a(x) + [c_i(x) < T_i]·b(x),

a(x) = the query is right to leave at i, b(x) = it ends right if it goes on (under T_{>i});
every candidate of one exit is scored at once in NumPy: the confidences of each exit are sorted once
per search, then one suffix sum and one vectorized binary search score all candidates (the const is
the hits of the queries that leave before i, so no separate evaluation of the objective is needed).
The search starts from a sequential greedy solution (b(x) = "targeted later", optimistic about later
exits) and improves it by coordinate-ascent sweeps (never worse than its start), which stop as soon
as every exit has been re-optimized without a gain since the last change. When the product of the
candidate counts is small (`exhaustive_limit`), every combination is evaluated instead (vectorized
in JAX, exact).

With `balanced=True` each target exit's queries count as one equal share (a query of exit e weighs
1 / #{targets = e}, as integers scaled by BALANCE_SCALE): the queries' mix of exits is the attacker's
choice of images, not the mix the victim meets when deployed (natural images unrelated to its task
mostly leave late), and the plain count lets the crowded exits decide every threshold.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.exits._policy import assign

BALANCE_SCALE = 1_000_000  # balanced weights: round(BALANCE_SCALE / queries of the target exit)


def exit_weights(targets, num_exits: int, balanced: bool) -> np.ndarray:
    """int64[N] weight of each query in the objective: 1, or its target exit's equal share."""
    targets = np.asarray(targets)
    if not balanced:
        return np.ones(targets.shape, np.int64)
    counts = np.bincount(targets, minlength=num_exits)
    return np.rint(BALANCE_SCALE / np.maximum(counts, 1)).astype(np.int64)[targets]


def _check(confidences, targets, correct):
    conf = np.asarray(confidences, np.float32)
    if conf.ndim != 2 or conf.shape[1] < 2:
        raise ValueError(f"confidences must be [N, K] with K >= 2 exits; got shape {conf.shape}")
    if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
        raise ValueError("confidences must be finite and within [0, 1] (max-softmax probabilities)")
    targets = np.asarray(targets)
    if targets.shape != (conf.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            f"target_exits must be int[{conf.shape[0]}]; got {targets.dtype}{list(targets.shape)}"
        )
    if targets.size and (targets.min() < 0 or targets.max() >= conf.shape[1]):
        raise ValueError(f"target exits must lie in 0..{conf.shape[1] - 1}")
    if correct is not None:
        correct = np.asarray(correct, bool)
        if correct.shape != conf.shape:
            raise ValueError(f"label_match must be bool[N, K] like the confidences; got {correct.shape}")
    return conf, targets.astype(np.int32), correct


def candidates(confidences, targets, exit_index: int) -> np.ndarray:
    """Sorted candidate thresholds for exit `exit_index` (METHODS §3.6, module docstring)."""
    c = confidences[:, exit_index]
    mine, others = c[targets == exit_index], c[targets != exit_index]

    def above(v):  # the next float32 above v (no query at v leaves), capped at 1
        return np.float32(min(np.nextafter(np.float32(v), np.float32(2)), np.float32(1)))

    if mine.size == 0:
        return np.array([above(c.max())], np.float32)
    if others.size == 0:
        return np.array([mine.min()], np.float32)
    lo, hi = mine.min(), others.max()
    inside = c[(c >= lo) & (c <= hi)]
    return np.unique(np.concatenate([inside, [lo, above(hi)]]).astype(np.float32))


def objective(confidences, targets, thresholds, label_match=None, weights=None) -> int:
    """Number of queries whose exit under `thresholds` equals their target (and label, if given);
    with integer `weights` [N], their summed weight."""
    exits = np.asarray(assign(jnp.asarray(confidences), jnp.asarray(thresholds, jnp.float32)))
    hit = exits == targets
    if label_match is not None:
        hit &= label_match[np.arange(len(targets)), exits]
    return int(hit.sum()) if weights is None else int(np.sum(np.asarray(weights, np.int64)[hit]))


class _SortedExit:
    """One exit's confidences in sorted order: scores every candidate threshold in O(N + C log N)."""

    def __init__(self, conf_i):
        conf_i = np.asarray(conf_i, np.float32)
        self.order = np.argsort(conf_i)
        self.sorted = conf_i[self.order]

    def scores(self, a, b, cand) -> np.ndarray:
        """For every candidate c: Σ [conf_i >= c]·a + [conf_i < c]·b (a, b: per query, masked by reach,
        bool or integer weights).

        The queries leaving at c are a suffix of the sorted order, so score(c) = Σ b + (suffix sum of
        a - b from the first confidence >= c)."""
        gain = np.subtract(a, b, dtype=np.int64)[self.order]
        suffix = np.zeros(gain.size + 1, np.int64)
        suffix[:-1] = np.cumsum(gain[::-1])[::-1]
        first = np.searchsorted(self.sorted, np.asarray(cand, np.float32), side="left")
        return int(np.sum(b, dtype=np.int64)) + suffix[first]


def _scores(conf_i, a, b, cand) -> np.ndarray:
    """The objective of every candidate threshold of one exit (see `_SortedExit.scores`), sort included."""
    return _SortedExit(conf_i).scores(a, b, cand)


def _right_at(i, targets, correct):
    ok = targets == i
    return ok & correct[:, i] if correct is not None else ok


def _exits_after(conf, thresholds, start):
    """Exit of every query if it runs past exit start-1, under thresholds[start:]."""
    k = conf.shape[1]
    exits = np.full(conf.shape[0], k - 1, np.int32)
    for j in range(k - 2, start - 1, -1):
        exits = np.where(conf[:, j] >= thresholds[j], j, exits)
    return exits


def _reach(conf, thresholds, i):
    reach = np.ones(conf.shape[0], bool)
    for j in range(i):
        reach &= conf[:, j] < thresholds[j]
    return reach


class _Problem:
    """A checked instance with each exit's candidates and sorted confidences, computed once."""

    def __init__(self, confidences, targets, label_match, balanced: bool = False):
        self.conf, self.targets, self.correct = _check(confidences, targets, label_match)
        self.weights = exit_weights(self.targets, self.conf.shape[1], balanced)
        self.cands = [candidates(self.conf, self.targets, i) for i in range(self.conf.shape[1] - 1)]
        self._sorted = {}

    def exit(self, i) -> _SortedExit:
        if i not in self._sorted:
            self._sorted[i] = _SortedExit(self.conf[:, i])
        return self._sorted[i]

    def hits(self, exits) -> np.ndarray:
        """Per query: its exit equals its target (and the label matches, if asked)."""
        hit = exits == self.targets
        if self.correct is not None:
            hit &= self.correct[np.arange(len(exits)), exits]
        return hit

    def score(self, mask) -> int:
        """The summed weight of the queries in `mask`."""
        return int(np.sum(self.weights[mask]))


def _best(cand, scores) -> tuple[np.float32, int]:
    k = int(np.argmax(scores))  # ties: the lowest threshold (earliest exits, cheapest)
    return cand[k], int(scores[k])


def _greedy(problem: _Problem) -> np.ndarray:
    conf, targets, correct = problem.conf, problem.targets, problem.correct
    k = conf.shape[1]
    thresholds = np.ones(k - 1, np.float32)
    reach = np.ones(conf.shape[0], bool)
    for i in range(k - 1):
        if i:
            reach &= conf[:, i - 1] < thresholds[i - 1]
        a = (reach & _right_at(i, targets, correct)) * problem.weights
        b = (reach & (targets > i)) * problem.weights
        thresholds[i], _ = _best(problem.cands[i], problem.exit(i).scores(a, b, problem.cands[i]))
    return thresholds


def _coordinate_ascent(problem: _Problem, start, max_sweeps: int) -> np.ndarray:
    conf, targets, correct = problem.conf, problem.targets, problem.correct
    k = conf.shape[1]
    thresholds = np.asarray(start, np.float32).copy()
    hits = problem.hits(_exits_after(conf, thresholds, 0))
    best = problem.score(hits)
    unchanged = 0  # exits re-optimized in a row without a gain
    for _ in range(max_sweeps):
        improved = False
        for i in range(k - 1):
            if unchanged >= k - 1:  # every exit is at its optimum given the others: nothing can change
                return thresholds
            reach = _reach(conf, thresholds, i)
            a = (reach & _right_at(i, targets, correct)) * problem.weights
            b = (reach & problem.hits(_exits_after(conf, thresholds, i + 1))) * problem.weights
            cand = np.union1d(problem.cands[i], [thresholds[i]]).astype(np.float32)
            value, score = _best(cand, problem.exit(i).scores(a, b, cand))
            score += problem.score(hits & ~reach)  # the queries leaving before i do not change
            if score > best:
                thresholds[i], best, improved = value, score, True
                hits = problem.hits(_exits_after(conf, thresholds, 0))
                unchanged = 1  # exit i itself is at its optimum
            else:
                unchanged += 1
        if not improved:
            break
    return thresholds


def greedy(confidences, targets, label_match=None, balanced: bool = False) -> np.ndarray:
    """Sequential greedy thresholds: exit by exit, assuming later exits will be right."""
    return _greedy(_Problem(confidences, targets, label_match, balanced))


def coordinate_ascent(
    confidences, targets, start, label_match=None, max_sweeps: int = 20, balanced: bool = False
) -> np.ndarray:
    """Improve `start` one exit at a time with the exact per-exit optimum; never worse than `start`."""
    return _coordinate_ascent(_Problem(confidences, targets, label_match, balanced), start, max_sweeps)


@jax.jit
def _combo_scores(conf, targets, combos, correct, weights):
    def one(t):
        exits = assign(conf, t)
        hit = jnp.logical_and(exits == targets, jnp.take_along_axis(correct, exits[:, None], axis=1)[:, 0])
        return jnp.sum(jnp.where(hit, weights, 0))

    return jax.vmap(one)(combos)


def exhaustive(
    confidences, targets, label_match=None, chunk: int = 4096, balanced: bool = False
) -> np.ndarray:
    """Every combination of candidates, evaluated in vectorized chunks (exact; small instances)."""
    conf, targets, correct = _check(confidences, targets, label_match)
    weights = exit_weights(targets, conf.shape[1], balanced)
    cands = [candidates(conf, targets, i) for i in range(conf.shape[1] - 1)]
    grids = np.stack(np.meshgrid(*cands, indexing="ij"), axis=-1).reshape(-1, len(cands)).astype(np.float32)
    mask = np.ones_like(conf, bool) if correct is None else correct
    best_score, best = -1, None
    for start in range(0, len(grids), chunk):
        block = grids[start : start + chunk]
        padded = (
            np.concatenate([block, np.repeat(block[-1:], chunk - len(block), 0)])
            if len(grids) > chunk
            else block
        )
        scores = np.asarray(
            _combo_scores(
                jnp.asarray(conf), jnp.asarray(targets), jnp.asarray(padded), jnp.asarray(mask),
                jnp.asarray(weights, jnp.int32),
            )
        )  # fmt: skip
        scores = scores[: len(block)]
        k = int(np.argmax(scores))
        if scores[k] > best_score:
            best_score, best = int(scores[k]), block[k]
    return best.astype(np.float32)


def brute_force(confidences, targets, label_match=None, balanced: bool = False) -> np.ndarray:
    """Reference: a plain loop over every combination of candidates (for tests; exponential)."""
    conf, targets, correct = _check(confidences, targets, label_match)
    weights = exit_weights(targets, conf.shape[1], balanced)
    cands = [candidates(conf, targets, i) for i in range(conf.shape[1] - 1)]
    best_score, best = -1, None
    for combo in itertools.product(*cands):
        t = np.array(combo, np.float32)
        exits = np.full(len(targets), conf.shape[1] - 1)
        for j in range(len(t) - 1, -1, -1):
            exits = np.where(conf[:, j] >= t[j], j, exits)
        hit = exits == targets
        if correct is not None:
            hit &= correct[np.arange(len(targets)), exits]
        score = int(weights[hit].sum())
        if score > best_score:
            best_score, best = score, t
    return best


def search_thresholds(
    confidences,
    target_exits,
    *,
    label_match=None,
    balanced: bool = False,
    method: str = "auto",
    exhaustive_limit: int = 2_000_000,
) -> np.ndarray:
    """Thresholds f32[K-1] maximizing the queries whose exit under them equals their target exit.

    Args:
      confidences: f32[N, K] max-softmax confidence of the student at every exit, no early exit.
      target_exits: int[N] 0-based exit of each query (estimated from the victim's timing).
      label_match: optional bool[N, K], the student's label at exit k equals the victim's answer;
        then a query counts only if both its exit and its label match.
      balanced: count each target exit's queries as one equal share (module docstring) instead of
        one per query.
      method: "auto" (exhaustive when the candidate product <= exhaustive_limit, else greedy +
        coordinate ascent), "exhaustive", "ascent", "greedy" or "brute" (plain-loop reference).
    """
    conf, targets, correct = _check(confidences, target_exits, label_match)
    if method == "brute":
        return brute_force(conf, targets, correct, balanced)
    problem = _Problem(conf, targets, correct, balanced)
    if method == "greedy":
        return _greedy(problem)
    size = np.prod([len(c) for c in problem.cands], dtype=np.float64)
    if method == "exhaustive" or (method == "auto" and size <= exhaustive_limit):
        return exhaustive(conf, targets, correct, balanced=balanced)
    if method in ("auto", "ascent"):
        return _coordinate_ascent(problem, _greedy(problem), max_sweeps=20)
    raise ValueError(f"method must be auto, exhaustive, ascent, greedy or brute; got {method!r}")
