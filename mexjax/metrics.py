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
