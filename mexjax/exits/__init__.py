"""Output strategy, early-exit inference, and reading exits from response times.

Public API:
The output strategy (0-based exits: a sample leaves at the first exit i < K-1 whose confidence >= t[i])
  assign(confidences f32[B, K], thresholds f32[K-1]) -> int32[B]   the exit of each sample
  probabilities(logits) / confidence(probs)            float32 softmax; max-softmax confidence
  check_thresholds(t, K) -> f32[K-1]                   validated: length K-1, finite, in [0, 1]
  select(per_exit [K, B, ...], exits) -> [B, ...]      each sample's row at its exit
  policy_outcome(probs f32[K, N, C], labels, t)        (accuracy, exits int32[N]) under thresholds
Inference
  ExitRunner(stages, tile=1, buckets)   three paths that agree exactly: all_exits / policy (a),
                                        early_exit_single (b, batch 1; `lean` is the oracle's timed path),
                                        early_exit_batched (c, undecided rows compacted into buckets)
A victim's thresholds
  sdn_global_threshold(probs, labels, max_drop=0.02) -> ThresholdChoice   the SDN rule: one global q
Reading exits from response times (the timing side channel)
  estimate_exits(runtimes f[N] or f[R, N]) -> (exit_ids int32[N], num_exits)   one mixture of exit times
                                                       (every_pass=True, R >= 3: every pass modelled)
  analyse_timing(runtimes) -> TimingFit                the same, with boundaries and per-query confidence
  fastest(runtimes) / check_runtimes(runtimes)         per-query fastest pass; validated times
  estimate_exits_density(runtimes)                     the earlier KDE density-rule estimator (a baseline)
  kde(samples, points, bandwidth) / rule_of_thumb      jnp Gaussian KDE (exact or binned FFT); bandwidth
Output-strategy search (a student's thresholds that reproduce the victim's exits)
  search_thresholds(confidences f32[N, K], target_exits) -> f32[K-1]   most queries exit at their target
    (balanced=True: each target exit's queries one equal share; exit_weights gives the weights)
  candidates / objective / greedy / coordinate_ascent  its pieces: per-exit candidates, hits, the search
  brute_force                                          the plain-loop reference the tests compare with
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
    exit_weights,
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
    "exit_weights",
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
