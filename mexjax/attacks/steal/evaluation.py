"""Evaluation code (it holds ground truth and costs no queries): a stolen model against its victim."""

from __future__ import annotations

from mexjax import metrics, oracle
from mexjax.attacks.steal.student_training import AttackResult


def evaluate(victim: oracle.Oracle, result: AttackResult, images, labels) -> dict:
    """Student vs victim on a labelled test set, each under its own policy (`metrics.evaluate`): ACC,
    fidelity, CLO, exit agreement, mean FLOPs and exit histograms, then the attack's bookkeeping."""
    scores = metrics.evaluate(result.deployed(), images, labels, reference=oracle.deployed(victim))
    return {
        "victim_accuracy": scores["reference_accuracy"],
        "accuracy": scores["accuracy"],
        "fidelity": scores["fidelity"],
        "closeness": scores["closeness"],
        "exit_agreement": scores["exit_agreement"],
        "victim_mean_flops": scores["reference_mean_flops"],
        "mean_flops": scores["mean_flops"],
        "victim_exit_histogram": scores["reference_exit_histogram"],
        "exit_histogram": scores["exit_histogram"],
        **result.bookkeeping(),
    }
