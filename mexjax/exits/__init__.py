"""Output strategy and early-exit inference.

assign(confidences f32[B, K], thresholds f32[K-1]) -> int32[B]   0-based exit of each sample
probabilities(logits), confidence(probs), check_thresholds(t, K), select(per_exit, exits)
ExitRunner(stages, tile=1)  three inference paths that agree exactly: all_exits / policy (a),
                            early_exit_single (b, batch 1), early_exit_batched (c, compacted buckets)
"""

from mexjax.exits._density import kde, rule_of_thumb
from mexjax.exits._inference import ExitRunner
from mexjax.exits._kde import check_runtimes
from mexjax.exits._kde import estimate_exits as estimate_exits_density
from mexjax.exits._policy import assign, check_thresholds, confidence, probabilities, select
from mexjax.exits._search import (
    brute_force,
    candidates,
    coordinate_ascent,
    greedy,
    objective,
    search_thresholds,
)
from mexjax.exits._thresholds import ThresholdChoice, policy_outcome, sdn_global_threshold
from mexjax.exits._timing import TimingFit, analyse_timing, estimate_exits, fastest

__all__ = [
    "ExitRunner",
    "ThresholdChoice",
    "TimingFit",
    "analyse_timing",
    "assign",
    "brute_force",
    "candidates",
    "check_runtimes",
    "check_thresholds",
    "confidence",
    "coordinate_ascent",
    "estimate_exits",
    "estimate_exits_density",
    "fastest",
    "greedy",
    "kde",
    "objective",
    "policy_outcome",
    "probabilities",
    "rule_of_thumb",
    "sdn_global_threshold",
    "search_thresholds",
    "select",
]
