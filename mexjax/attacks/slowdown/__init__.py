"""Slowdown attacks on multi-exit networks and image captioners (seed 001, METHODS §4).

Every attack here is projected gradient descent through the shared loop of `attacks._pgd` (`pgd`,
traceable; `in_chunks`: a jitted attack over a whole set in fixed-size chunks, one compilation).

Public API:
DeepSloth on multi-exit networks
  deepsloth_loss(logits) -> f32[B]                     Σ_{i<K} CE(uniform, softmax_i)
  attack(net, variables, images, SlothConfig)          per-sample PGD (L∞ or L2), white box or on a surrogate
  SlothConfig / NORMS                                  PGD settings (ε = 8/255, step 2/255, 30 steps); norms
  universal(net, variables, images) -> δ               one L∞ perturbation for all inputs; apply_universal
  adaptive_attack(net, variables, images, detector)    DeepSloth that also keeps the SVM detector quiet
  svm_parameters(detector) / svm_decision(params, f)   the fitted detector as arrays; its decision in jnp
NICGSlowDown on captioners
  nicg_attack(captioner, variables, images, NICGConfig)   PGD for captions that do not end (L∞ / L2)
  eos_loss(logits, eos) -> f32[B]                      Σ over decoding steps of log p(<eos>) (or a hinge)
Measuring and running
  outcome(net, variables, thresholds, images, labels)  accuracy, efficacy, FLOPs, exits under the thresholds
  run(checkpoint, dataset, out_dir, ...)               what `python -m mexjax slowdown` does
  DEFENSES                                             the input defenses `run` can apply, by name
  efficacy_figure(outcomes) / plot_efficacy(outcomes, path)   efficacy curves + exit histograms
"""

from mexjax.attacks.slowdown._adaptive import adaptive_attack, svm_decision, svm_parameters
from mexjax.attacks.slowdown._deepsloth import (
    NORMS,
    SlothConfig,
    apply_universal,
    attack,
    deepsloth_loss,
    universal,
)
from mexjax.attacks.slowdown._nicg import NICGConfig, eos_loss, nicg_attack
from mexjax.attacks.slowdown._run import DEFENSES, efficacy_figure, outcome, plot_efficacy, run

__all__ = [
    "DEFENSES",
    "NORMS",
    "NICGConfig",
    "SlothConfig",
    "adaptive_attack",
    "apply_universal",
    "attack",
    "deepsloth_loss",
    "efficacy_figure",
    "eos_loss",
    "nicg_attack",
    "outcome",
    "plot_efficacy",
    "run",
    "svm_decision",
    "svm_parameters",
    "universal",
]
