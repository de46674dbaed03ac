"""Metrics of the stealing and slowdown work: accuracy, fidelity, closeness, cost, exit prediction.

All take plain arrays (labels and 0-based exits per sample) and return Python floats or numpy arrays;
each model is evaluated under its own thresholds before these are called.
"""

from __future__ import annotations

import numpy as np


def _same_length(*arrays):
    arrays = [np.asarray(a) for a in arrays]
    n = {a.shape for a in arrays}
    if len(n) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"expected 1-D arrays of one length; got shapes {[a.shape for a in arrays]}")
    if arrays[0].size == 0:
        raise ValueError("metrics of an empty set of samples are undefined")
    return arrays


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
    reached by most queries does not hide failures on sparse early exits), per-exit recall and the
    confusion matrix [true exit, estimated exit] (rectangular when the exit counts differ).
    """
    estimated, true = _same_length(estimated, true)
    if estimated.min() < 0 or true.min() < 0:
        raise ValueError("exit indices are 0-based and non-negative")
    k_true, k_est = int(true.max()) + 1, int(estimated.max()) + 1
    confusion = np.zeros((k_true, max(k_est, k_true)), np.int64)
    np.add.at(confusion, (true, estimated), 1)
    present = confusion.sum(axis=1) > 0
    recall = np.where(present, np.diag(confusion[:, :k_true]) / np.maximum(confusion.sum(axis=1), 1), np.nan)
    return {
        "accuracy": float(np.mean(estimated == true)),
        "balanced_accuracy": float(np.nanmean(recall)),
        "recall_per_exit": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": confusion.tolist(),
    }


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
