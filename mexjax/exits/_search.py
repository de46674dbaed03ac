"""Output-strategy search: thresholds that make a student exit where the victim did.

Given the student's confidences c[x, i] on the queries and each query's target exit e(x) (estimated
from the victim's timing), maximize over thresholds T the number of queries with exit_T(x) = e(x)
(option: and the same label as the victim at that exit).

Candidates for T_i are the confidences at exit i within [min Conf_i, max Conf̄_i] (METHODS §3.6;
Conf_i: of queries targeted at exit i, Conf̄_i: of the others), plus the value just above max Conf̄_i
(nobody else leaves at i). With the other thresholds fixed, the objective as a function of T_i is

    const + Σ_{x reaching i} [c_i(x) >= T_i]·a(x) + [c_i(x) < T_i]·b(x),

a(x) = the query is right to leave at i, b(x) = it ends right if it goes on (under T_{>i});
every candidate of one exit is evaluated in one batched op (a sort, a suffix sum, a vectorized
search). The search starts from a
sequential greedy solution (b(x) = "targeted later", optimistic about later exits) and improves it by
coordinate-ascent sweeps (never worse than its start). When the product of the candidate counts is
small (`exhaustive_limit`), every combination is evaluated instead (vectorized, exact).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.exits._policy import assign


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


def objective(confidences, targets, thresholds, label_match=None) -> int:
    """Number of queries whose exit under `thresholds` equals their target (and label, if given)."""
    exits = np.asarray(assign(jnp.asarray(confidences), jnp.asarray(thresholds, jnp.float32)))
    hit = exits == targets
    if label_match is not None:
        hit &= label_match[np.arange(len(targets)), exits]
    return int(hit.sum())


@jax.jit
def _scores(conf_i, a, b, cand):
    """For every candidate c: Σ [conf_i >= c]·a + [conf_i < c]·b (a, b already masked by reach).

    One batched op for all candidates: sort the confidences once; the queries leaving at c are a
    suffix of that order, so score(c) = Σ b + (suffix sum of a - b from the first conf >= c)."""
    order = jnp.argsort(conf_i)
    gain = (a - b)[order]
    suffix = jnp.concatenate([jnp.cumsum(gain[::-1])[::-1], jnp.zeros((1,), gain.dtype)])
    first = jnp.searchsorted(conf_i[order], cand, side="left")
    return jnp.sum(b) + suffix[first]


def _best_candidate(conf_i, a, b, cand) -> tuple[float, int]:
    scores = np.asarray(_scores(jnp.asarray(conf_i), jnp.asarray(a), jnp.asarray(b), jnp.asarray(cand)))
    k = int(np.argmax(scores))  # ties: the lowest threshold (earliest exits, cheapest)
    return float(cand[k]), int(scores[k])


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


def greedy(confidences, targets, label_match=None) -> np.ndarray:
    """Sequential greedy thresholds: exit by exit, assuming later exits will be right."""
    conf, targets, correct = _check(confidences, targets, label_match)
    k = conf.shape[1]
    thresholds = np.ones(k - 1, np.float32)
    for i in range(k - 1):
        reach = _reach(conf, thresholds, i)
        a = reach & _right_at(i, targets, correct)
        b = reach & (targets > i)
        thresholds[i], _ = _best_candidate(
            conf[:, i], a.astype(np.int32), b.astype(np.int32), candidates(conf, targets, i)
        )
    return thresholds


def coordinate_ascent(confidences, targets, start, label_match=None, max_sweeps: int = 20) -> np.ndarray:
    """Improve `start` one exit at a time with the exact per-exit optimum; never worse than `start`."""
    conf, targets, correct = _check(confidences, targets, label_match)
    k = conf.shape[1]
    thresholds = np.asarray(start, np.float32).copy()
    cands = [candidates(conf, targets, i) for i in range(k - 1)]
    best = objective(conf, targets, thresholds, correct)
    for _ in range(max_sweeps):
        improved = False
        for i in range(k - 1):
            reach = _reach(conf, thresholds, i)
            later = _exits_after(conf, thresholds, i + 1)
            ok_later = later == targets
            if correct is not None:
                ok_later &= correct[np.arange(len(targets)), later]
            a = (reach & _right_at(i, targets, correct)).astype(np.int32)
            b = (reach & ok_later).astype(np.int32)
            value, _ = _best_candidate(
                conf[:, i], a, b, np.union1d(cands[i], [thresholds[i]]).astype(np.float32)
            )
            trial = thresholds.copy()
            trial[i] = value
            score = objective(conf, targets, trial, correct)
            if score > best:
                thresholds, best, improved = trial, score, True
        if not improved:
            break
    return thresholds


@jax.jit
def _combo_scores(conf, targets, combos, correct):
    def one(t):
        exits = assign(conf, t)
        hit = exits == targets
        return jnp.sum(jnp.logical_and(hit, jnp.take_along_axis(correct, exits[:, None], axis=1)[:, 0]))

    return jax.vmap(one)(combos)


def exhaustive(confidences, targets, label_match=None, chunk: int = 4096) -> np.ndarray:
    """Every combination of candidates, evaluated in vectorized chunks (exact; small instances)."""
    conf, targets, correct = _check(confidences, targets, label_match)
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
            _combo_scores(jnp.asarray(conf), jnp.asarray(targets), jnp.asarray(padded), jnp.asarray(mask))
        )
        scores = scores[: len(block)]
        k = int(np.argmax(scores))
        if scores[k] > best_score:
            best_score, best = int(scores[k]), block[k]
    return best.astype(np.float32)


def brute_force(confidences, targets, label_match=None) -> np.ndarray:
    """Reference: a plain loop over every combination of candidates (for tests; exponential)."""
    conf, targets, correct = _check(confidences, targets, label_match)
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
        if hit.sum() > best_score:
            best_score, best = int(hit.sum()), t
    return best


def search_thresholds(
    confidences,
    target_exits,
    *,
    label_match=None,
    method: str = "auto",
    exhaustive_limit: int = 2_000_000,
) -> np.ndarray:
    """Thresholds f32[K-1] maximizing the queries whose exit under them equals their target exit.

    Args:
      confidences: f32[N, K] max-softmax confidence of the student at every exit, no early exit.
      target_exits: int[N] 0-based exit of each query (estimated from the victim's timing).
      label_match: optional bool[N, K], the student's label at exit k equals the victim's answer;
        then a query counts only if both its exit and its label match.
      method: "auto" (exhaustive when the candidate product <= exhaustive_limit, else greedy +
        coordinate ascent), "exhaustive", "ascent", "greedy" or "brute" (plain-loop reference).
    """
    conf, targets, correct = _check(confidences, target_exits, label_match)
    if method == "brute":
        return brute_force(conf, targets, correct)
    if method == "greedy":
        return greedy(conf, targets, correct)
    size = np.prod([len(candidates(conf, targets, i)) for i in range(conf.shape[1] - 1)], dtype=np.float64)
    if method == "exhaustive" or (method == "auto" and size <= exhaustive_limit):
        return exhaustive(conf, targets, correct)
    if method in ("auto", "ascent"):
        return coordinate_ascent(conf, targets, greedy(conf, targets, correct), correct)
    raise ValueError(f"method must be auto, exhaustive, ascent, greedy or brute; got {method!r}")
