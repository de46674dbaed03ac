"""Model stealing against multi-exit networks.

steal(oracle, queries, StealConfig) -> StealResult     timing side channel + two losses + threshold search
evaluate(oracle, result, images, labels) -> dict       ACC, fidelity, CLO, CC (evaluation code only)
performance_loss, strategy_loss, label_loss            per-example losses
"""

from mexjax.attacks.steal._losses import label_loss, performance_loss, strategy_loss
from mexjax.attacks.steal._multiexit import StealConfig, StealResult, evaluate, exit_prediction, steal

__all__ = [
    "StealConfig",
    "StealResult",
    "evaluate",
    "exit_prediction",
    "label_loss",
    "performance_loss",
    "steal",
    "strategy_loss",
]
