"""Model stealing against multi-exit networks.

steal(oracle, queries, StealConfig) -> StealResult     timing side channel + two losses + threshold search
knockoff / noise_attack / es_attack                    the baselines (no timing, global threshold)
evaluate(oracle, result, images, labels) -> dict       ACC, fidelity, CLO, CC (evaluation code only)
performance_loss, strategy_loss, label_loss            per-example losses
train_student, choose_thresholds                       the two halves of every attack's training
dfme / maze / data_free(oracle, student, DataFreeConfig)  data-free extraction (generator + student)
extract(DefendedVictim, attack, budget=...) -> record     any attack x any defended victim (harness)
"""

from mexjax.attacks.steal._baselines import ESAConfig, es_attack, knockoff, noise_attack
from mexjax.attacks.steal._datafree import (
    DataFreeConfig,
    DataFreeResult,
    Generator,
    GeneratorDiverged,
    data_free,
    dfme,
    maze,
    maze_config,
    recovered_logits,
)
from mexjax.attacks.steal._harness import DefendedVictim, deployed_answers, extract
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
    "DataFreeConfig",
    "DataFreeResult",
    "DefendedVictim",
    "ESAConfig",
    "Generator",
    "GeneratorDiverged",
    "StealConfig",
    "StealResult",
    "choose_thresholds",
    "data_free",
    "deployed_answers",
    "dfme",
    "es_attack",
    "evaluate",
    "exit_prediction",
    "extract",
    "knockoff",
    "label_loss",
    "maze",
    "maze_config",
    "noise_attack",
    "performance_loss",
    "recovered_logits",
    "steal",
    "strategy_loss",
    "train_student",
]
