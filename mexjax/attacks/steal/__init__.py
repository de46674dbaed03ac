"""Model stealing against multi-exit networks: one module per attack, the attacks at the top.

The attacks (each takes an `oracle.BlackBox` victim and returns an `AttackResult`):
    timing_attack(victim, queries, StealConfig)        reads the exits from timing: utility + strategy
    knockoff / noise_attack / es_attack(..., StealConfig / ESAConfig)   the baselines (no timing)
    dfme / maze(victim, student, DataFreeConfig)       data-free extraction (generator + student)
    few_call(victim, proxies, FewCallConfig)            few-call stealing (active + self-paced)
    extract(oracle.DeployedModel, attack, budget=...)   any attack x any defended victim -> one record
Evaluating a result (evaluation code, holds ground truth):
    evaluate(victim, result, images, labels)            ACC, fidelity, CLO, CC (via metrics.evaluate)
Proxy images for few-call stealing: folder_proxies (a generator's output), pool_proxies (offline).

The modules, for what the top level leaves out:
    student_training   AttackResult, StealConfig, StealResult, build_student, train_student,
                       choose_thresholds: what the distilling attacks share
    losses             performance_loss, strategy_loss, label_loss
    timing             timing_attack, score_exit_reading;  retime: adaptive_timing, RetimedAnswers
    baselines          knockoff, noise_attack, es_attack, ESAConfig
    datafree           data_free, dfme, maze, maze_config, DataFreeConfig, DataFreeResult, Generator,
                       GeneratorDiverged, recovered_logits
    fewcall            few_call, knockoff_calls, evaluate_few_call, FewCallConfig, FewCallResult,
                       pseudo_labels, select_queries, selection_weights
    proxies            folder_proxies, callable_proxies, pool_proxies, check_proxies, balance_proxies,
                       TINYIMAGENET_FOR_CIFAR10
    harness            extract, ATTACKS;  evaluation: evaluate
"""

import importlib
import warnings

from mexjax.attacks.steal import (
    baselines,
    datafree,
    evaluation,
    fewcall,
    harness,
    losses,
    proxies,
    retime,
    student_training,
    timing,
)
from mexjax.attacks.steal.baselines import ESAConfig, es_attack, knockoff, noise_attack
from mexjax.attacks.steal.datafree import DataFreeConfig, dfme, maze
from mexjax.attacks.steal.evaluation import evaluate
from mexjax.attacks.steal.fewcall import FewCallConfig, few_call
from mexjax.attacks.steal.harness import extract
from mexjax.attacks.steal.proxies import folder_proxies, pool_proxies
from mexjax.attacks.steal.student_training import AttackResult, StealConfig
from mexjax.attacks.steal.timing import timing_attack

__all__ = [
    "AttackResult",
    "DataFreeConfig",
    "ESAConfig",
    "FewCallConfig",
    "StealConfig",
    # the modules
    "baselines",
    "datafree",
    "dfme",
    "es_attack",
    "evaluate",
    "evaluation",
    "extract",
    "few_call",
    "fewcall",
    "folder_proxies",
    "harness",
    "knockoff",
    "losses",
    "maze",
    "noise_attack",
    "pool_proxies",
    "proxies",
    "retime",
    "student_training",
    "timing",
    "timing_attack",
]

# Names the top level exported before it was curated: they still resolve, with a warning naming their
# module, so that scripts written against them keep running.
_MOVED = {
    "StealResult": "student_training",
    "build_student": "student_training",
    "train_student": "student_training",
    "choose_thresholds": "student_training",
    "performance_loss": "losses",
    "strategy_loss": "losses",
    "label_loss": "losses",
    "RetimedAnswers": "retime",
    "adaptive_timing": "retime",
    "DataFreeResult": "datafree",
    "Generator": "datafree",
    "GeneratorDiverged": "datafree",
    "data_free": "datafree",
    "maze_config": "datafree",
    "recovered_logits": "datafree",
    "FewCallResult": "fewcall",
    "evaluate_few_call": "fewcall",
    "knockoff_calls": "fewcall",
    "pseudo_labels": "fewcall",
    "select_queries": "fewcall",
    "selection_weights": "fewcall",
    "TINYIMAGENET_FOR_CIFAR10": "proxies",
    "balance_proxies": "proxies",
    "callable_proxies": "proxies",
    "check_proxies": "proxies",
}
_RENAMED = {"steal": ("timing", "timing_attack"), "exit_prediction": ("timing", "score_exit_reading")}


def __getattr__(name: str):
    if name in _MOVED:
        module, new = _MOVED[name], name
    elif name in _RENAMED:
        module, new = _RENAMED[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"steal.{name} is now steal.{module}.{new}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(f"{__name__}.{module}"), new)
