"""Metrics of the stealing and slowdown work: accuracy, fidelity, closeness, cost, exit prediction.

All take plain arrays (labels and 0-based exits per sample) and return Python floats or numpy arrays;
each model is evaluated under its own thresholds before these are called. `evaluate` is the one place
that runs a deployed model under its own policy and compares it with another (a victim): every attack,
runner, the demo and the notebooks report through it.

Public API:
  evaluate(model, images, labels=None, *, reference=None) -> dict   an `oracle.DeployedModel` as served:
      accuracy, mean FLOPs, FLOPs share, efficacy, exit histogram; against a reference (the victim)
      also fidelity, closeness and exit agreement, and the reference's figures prefixed `reference_`
  accuracy(predicted, labels)                  share of correct labels (ACC)
  fidelity(student_labels, victim_labels)      share of samples where the student answers the victim's label
  closeness(s_labels, s_exits, v_labels, v_exits)   CLO: same label at the same exit as the victim
  exit_agreement(student_exits, victim_exits)  share of samples leaving at the victim's exit
  mean_flops(exits, exit_flops)                CC: mean FLOPs per sample under its exits
  efficacy(exits, exit_flops) / efficacy_curve(...)   slowdown efficacy: area under exited share vs cost
  exit_prediction(estimated, true) -> dict     how well timing read the exits: (balanced) accuracy,
                                               per-exit recall, in-order aligned scores, confusion
  aligned_exit_scores(confusion)               the aligned scores from a stored confusion matrix
  best_boundary_accuracy(runtimes, true)       the best any time-threshold rule scores (exact DP; evaluation)
"""

from __future__ import annotations

import numpy as np

from mexjax.nets import exit_flops as _exit_flops
from mexjax.oracle import DeployedModel


def evaluate(model: DeployedModel, images, labels=None, *, reference: DeployedModel | None = None) -> dict:
    """`model` answering `images` as it is served (real batched early exit under its thresholds, its
    output defense applied): accuracy (with labels), mean FLOPs and their share of the full network,
    efficacy, the exit histogram; with a `reference` (the victim) also fidelity, closeness, exit
    agreement and the same figures of the reference, prefixed `reference_`."""
    exits, probs = model.answer(images)
    out = _answer_figures(model, exits, probs, labels)
    if reference is not None:
        ref_exits, ref_probs = reference.answer(images)
        ref = _answer_figures(reference, ref_exits, ref_probs, labels)
        out.update({f"reference_{k}": v for k, v in ref.items()})
        predicted, ref_labels = probs.argmax(-1), ref_probs.argmax(-1)
        out["fidelity"] = fidelity(predicted, ref_labels)
        out["closeness"] = closeness(predicted, exits, ref_labels, ref_exits)
        out["exit_agreement"] = exit_agreement(exits, ref_exits)
    return out


def _answer_figures(model: DeployedModel, exits, probs, labels) -> dict:
    flops = np.asarray(_exit_flops(model.net), np.float64)
    cost = mean_flops(exits, flops)
    out = {
        "mean_flops": cost,
        "flops_ratio": cost / flops[-1],
        "exit_histogram": np.bincount(exits, minlength=model.net.num_exits).tolist(),
    }
    if model.net.num_exits >= 2:
        out["efficacy"] = efficacy(exits, flops)
    if labels is not None:
        out["accuracy"] = accuracy(probs.argmax(-1), labels)
    return out


def _same_length(*arrays):
    arrays = [np.asarray(a) for a in arrays]
    n = {a.shape for a in arrays}
    if len(n) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"expected 1-D arrays of one length; got shapes {[a.shape for a in arrays]}")
    if arrays[0].size == 0:
        raise ValueError("metrics of an empty set of samples are undefined")
    return arrays


MAX_EXIT_INDEX = 63  # exit indices above this are mistakes (networks here have at most nets.MAX_EXITS = 7)


def _exit_indices(name: str, exits) -> np.ndarray:
    """0-based exit indices as int64, checked: integers (float arrays of whole numbers are accepted)
    in 0..MAX_EXIT_INDEX (a stray huge index would otherwise size a confusion matrix by it)."""
    exits = np.asarray(exits)
    if exits.dtype.kind not in "iu":
        whole = exits.dtype.kind == "f" and np.all(np.isfinite(exits)) and np.all(exits == np.round(exits))
        if not whole:
            raise ValueError(f"{name} exit indices must be integers; got dtype {exits.dtype}")
    if exits.size and (exits.min() < 0 or exits.max() > MAX_EXIT_INDEX):
        raise ValueError(
            f"{name} exit indices must be 0-based ints in 0..{MAX_EXIT_INDEX}; they span "
            f"{exits.min()}..{exits.max()}"
        )
    return exits.astype(np.int64)


def accuracy(predicted, labels) -> float:
    predicted, labels = _same_length(predicted, labels)
    return float(np.mean(predicted == labels))


def fidelity(student_labels, victim_labels) -> float:
    """Share of samples where the student answers the victim's label."""
    return accuracy(student_labels, victim_labels)


def closeness(student_labels, student_exits, victim_labels, victim_exits) -> float:
    """CLO: share of samples with the same label *at the same exit* as the victim."""
    sl, se, vl, ve = _same_length(student_labels, student_exits, victim_labels, victim_exits)
    return float(np.mean((sl == vl) & (se == ve)))


def exit_agreement(student_exits, victim_exits) -> float:
    return accuracy(student_exits, victim_exits)


def mean_flops(exits, exit_flops) -> float:
    """CC: mean FLOPs per sample when each sample stops at its exit."""
    (exits,) = _same_length(exits)
    flops = np.asarray(exit_flops, np.float64)
    if exits.min() < 0 or exits.max() >= len(flops):
        raise ValueError(f"exits span {exits.min()}..{exits.max()} but there are {len(flops)} exit costs")
    return float(flops[exits].mean())


def exit_prediction(estimated, true) -> dict:
    """How well timing analysis predicted each query's exit.

    Returns accuracy, balanced accuracy (mean recall over the true exits present, so that a last exit
    reached by most queries does not hide failures on sparse early exits), per-exit recall, the same two
    after aligning estimated exits to true ones in order (`aligned_*`, `alignment`: one missed exit
    otherwise counts every later query wrong) and the confusion matrix [true exit, estimated exit]
    (rectangular when the exit counts differ).
    """
    estimated, true = _same_length(estimated, true)
    estimated, true = _exit_indices("estimated", estimated), _exit_indices("true", true)
    k_true, k_est = int(true.max()) + 1, int(estimated.max()) + 1
    confusion = np.zeros((k_true, max(k_est, k_true)), np.int64)
    np.add.at(confusion, (true, estimated), 1)
    present = confusion.sum(axis=1) > 0
    recall = np.where(present, np.diag(confusion[:, :k_true]) / np.maximum(confusion.sum(axis=1), 1), np.nan)
    aligned_accuracy, aligned_balanced, mapping = aligned_exit_scores(confusion)
    return {
        "accuracy": float(np.mean(estimated == true)),
        "balanced_accuracy": float(np.nanmean(recall)),
        "recall_per_exit": [None if np.isnan(r) else float(r) for r in recall],
        "aligned_accuracy": aligned_accuracy,
        "aligned_balanced_accuracy": aligned_balanced,
        "alignment": mapping,
        "confusion": confusion.tolist(),
    }


def aligned_exit_scores(confusion) -> tuple[float, float, list[int]]:
    """(aligned accuracy, aligned balanced accuracy, alignment) from a confusion matrix [true, estimated]
    as `exit_prediction` returns it (also usable on stored results)."""
    confusion = np.asarray(confusion, np.int64)
    used = np.nonzero(confusion.sum(axis=0))[0]
    k_est = int(used.max()) + 1 if used.size else 1
    mapping = _monotone_alignment(confusion[:, :k_est])
    hits = np.zeros(confusion.shape[0], np.int64)
    for e, t in enumerate(mapping):
        hits[t] += confusion[t, e]
    rows = confusion.sum(axis=1)
    present = rows > 0
    return (
        float(hits.sum() / confusion.sum()),
        float(np.mean(hits[present] / rows[present])),
        [int(t) for t in mapping],
    )


def _monotone_alignment(confusion: np.ndarray) -> np.ndarray:
    """The non-decreasing map estimated exit -> true exit that agrees with the most samples.

    Exits are ordered by time, so a missed exit shifts every later estimate by one; aligning the
    estimated humps to the true exits in order (dynamic programming over the confusion matrix
    [true, estimated]) scores the grouping itself. Evaluation only: it uses the true exits."""
    k_true, k_est = confusion.shape
    best = np.full((k_est + 1, k_true), -1.0)
    best[0, :] = 0.0
    choice = np.zeros((k_est, k_true), np.int64)
    for e in range(k_est):
        # best[e + 1, t] = max over t' <= t of best[e, t'] + confusion[t, e]
        running, arg = -1.0, 0
        for t in range(k_true):
            if best[e, t] > running:
                running, arg = best[e, t], t
            best[e + 1, t] = running + confusion[t, e]
            choice[e, t] = arg
    mapping = np.zeros(k_est, np.int64)
    t = int(np.argmax(best[k_est]))
    for e in range(k_est - 1, -1, -1):
        mapping[e] = t
        t = int(choice[e, t])
    return mapping


def best_boundary_accuracy(runtimes, true) -> dict:
    """The best any boundary rule could do on these runtimes: the accuracy (and balanced accuracy) of
    the K - 1 time thresholds that, given the true exits, classify the most queries right.

    Every timing estimator that cuts the time axis into ordered intervals (as `exits.estimate_exits`
    does) scores at most this; when it is itself below a target, the timing noise, not the estimator,
    is what falls short. Exact, by dynamic programming over the queries sorted by time. Evaluation only.
    """
    runtimes, true = np.asarray(runtimes, np.float64), np.asarray(true)
    if runtimes.ndim != 1 or runtimes.shape != true.shape or runtimes.size == 0:
        raise ValueError(
            f"need runtimes and true exits of one equal length; got {runtimes.shape}, {true.shape}"
        )
    if not np.isfinite(runtimes).all():
        raise ValueError("runtimes must be finite")
    true = _exit_indices("true", true)[np.argsort(runtimes, kind="stable")]
    k = int(true.max()) + 1
    counts = np.bincount(true, minlength=k)
    scores = {}
    for name, weight in (("accuracy", np.ones(k)), ("balanced_accuracy", 1.0 / np.maximum(counts, 1))):
        # prefix[e, j]: weight of the first j sorted queries whose true exit is e
        prefix = np.zeros((k, true.size + 1))
        prefix[:, 1:] = np.cumsum((true[None, :] == np.arange(k)[:, None]) * weight[:, None], axis=1)
        best = prefix[0]  # best[j]: the first j queries cut into exits 0..e
        for e in range(1, k):
            best = prefix[e] + np.maximum.accumulate(best - prefix[e])
        scores[name] = float(best[-1] / (true.size if name == "accuracy" else np.count_nonzero(counts)))
    return scores


def efficacy_curve(exits, exit_flops) -> tuple[np.ndarray, np.ndarray]:
    """The corners of the efficacy curve: (normalized cumulative cost, share of samples exited so far).

    Each exit i costs c_i = FLOPs up to exit i / FLOPs of the whole network; the share of samples that
    have left rises by exit i's share at c_i. The curve starts at (0, 0) and ends at (1, 1)."""
    (exits,) = _same_length(exits)
    flops = np.asarray(exit_flops, np.float64)
    if flops.ndim != 1 or flops.size < 2 or np.any(np.diff(flops) <= 0) or flops[0] <= 0:
        raise ValueError(f"exit_flops must be positive and increasing, one per exit (K >= 2); got {flops}")
    if exits.min() < 0 or exits.max() >= len(flops):
        raise ValueError(f"exits span {exits.min()}..{exits.max()} but there are {len(flops)} exit costs")
    cost = flops / flops[-1]
    share = np.cumsum(np.bincount(exits, minlength=len(flops))) / exits.size
    x = np.concatenate([[0.0], np.repeat(cost, 2)])
    y = np.concatenate([[0.0, 0.0], np.repeat(share, 2)[:-1]])
    return x, y


def efficacy(exits, exit_flops) -> float:
    """Slowdown efficacy: the area under `efficacy_curve` (trapezoid rule on its corners, exact for
    the step curve). 1 = every sample leaves at a free first exit; 0 = every sample runs the whole
    network. Equals Σ_i share_i (1 − c_i)."""
    x, y = efficacy_curve(exits, exit_flops)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
