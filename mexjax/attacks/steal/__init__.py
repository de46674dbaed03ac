"""Model stealing against multi-exit networks.

steal(oracle, queries, StealConfig) -> StealResult     timing side channel + two losses + threshold search
knockoff / noise_attack / es_attack                    the baselines (no timing, global threshold)
evaluate(oracle, result, images, labels) -> dict       ACC, fidelity, CLO, CC (evaluation code only)
performance_loss, strategy_loss, label_loss            per-example losses
train_student, choose_thresholds                       the two halves of every attack's training
"""

from mexjax.attacks.steal._baselines import ESAConfig, es_attack, knockoff, noise_attack
from mexjax.attacks.steal._losses import label_loss, performance_loss, strategy_loss
from mexjax.attacks.steal._multiexit import (
    StealConfig,
    StealResult,
    choose_thresholds,
    evaluate,
    exit_prediction,
    steal,
    train_student,
)

__all__ = [
    "ESAConfig",
    "StealConfig",
    "StealResult",
    "choose_thresholds",
    "es_attack",
    "evaluate",
    "exit_prediction",
    "knockoff",
    "label_loss",
    "noise_attack",
    "performance_loss",
    "steal",
    "strategy_loss",
    "train_student",
]
