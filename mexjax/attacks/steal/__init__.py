"""Model stealing against multi-exit networks.

timing_attack(oracle, queries, StealConfig) -> StealResult   timing side channel + two losses + thresholds
knockoff / noise_attack / es_attack                    the baselines (no timing, global threshold)
evaluate(oracle, result, images, labels) -> dict       ACC, fidelity, CLO, CC (via metrics.evaluate)
performance_loss, strategy_loss, label_loss            per-example losses
train_student, choose_thresholds, build_student         what every attack shares (`_student`)
dfme / maze / data_free(oracle, student, DataFreeConfig)  data-free extraction (generator + student)
extract(oracle.DeployedModel, attack, budget=...) -> record   any attack x any defended victim (harness)
few_call(oracle, proxies, FewCallConfig) -> FewCallResult   few-call stealing (active + self-paced)
folder_proxies / callable_proxies / pool_proxies            proxy image sources (a Dataset per class)
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
from mexjax.attacks.steal._fewcall import (
    FewCallConfig,
    FewCallResult,
    evaluate_few_call,
    few_call,
    knockoff_calls,
    pseudo_labels,
    select_queries,
    selection_weights,
)
from mexjax.attacks.steal._harness import extract
from mexjax.attacks.steal._losses import label_loss, performance_loss, strategy_loss
from mexjax.attacks.steal._proxies import (
    TINYIMAGENET_FOR_CIFAR10,
    balance_proxies,
    callable_proxies,
    check_proxies,
    folder_proxies,
    pool_proxies,
)
from mexjax.attacks.steal._retime import RetimedAnswers, adaptive_timing
from mexjax.attacks.steal._student import (
    StealConfig,
    StealResult,
    build_student,
    choose_thresholds,
    train_student,
)
from mexjax.attacks.steal._timing_attack import evaluate, exit_prediction, steal, timing_attack

__all__ = [
    "TINYIMAGENET_FOR_CIFAR10",
    "DataFreeConfig",
    "DataFreeResult",
    "ESAConfig",
    "FewCallConfig",
    "FewCallResult",
    "Generator",
    "GeneratorDiverged",
    "RetimedAnswers",
    "StealConfig",
    "StealResult",
    "adaptive_timing",
    "balance_proxies",
    "build_student",
    "callable_proxies",
    "check_proxies",
    "choose_thresholds",
    "data_free",
    "dfme",
    "es_attack",
    "evaluate",
    "evaluate_few_call",
    "exit_prediction",
    "extract",
    "few_call",
    "folder_proxies",
    "knockoff",
    "knockoff_calls",
    "label_loss",
    "maze",
    "maze_config",
    "noise_attack",
    "performance_loss",
    "pool_proxies",
    "pseudo_labels",
    "recovered_logits",
    "select_queries",
    "selection_weights",
    "steal",
    "strategy_loss",
    "timing_attack",
    "train_student",
]
