"""Slowdown attacks on multi-exit networks (seed 001, METHODS §4).

deepsloth_loss(logits) -> f32[B]                      Σ_{i<K} CE(uniform, softmax_i)
attack(net, variables, images, SlothConfig) -> images per-sample PGD (L∞ or L2), white box or on a surrogate
universal(net, variables, images) -> δ                one L∞ perturbation for all inputs; apply_universal
adaptive_attack(net, variables, images, detector)   DeepSloth that also keeps the SVM detector quiet
outcome(net, variables, thresholds, images, labels)   accuracy, efficacy, FLOPs, exits under the thresholds
run(checkpoint, dataset, out_dir, ...)                what `python -m mexjax slowdown` does
efficacy_figure(outcomes) / plot_efficacy(outcomes, path)   efficacy curves + exit histograms
"""

from mexjax.attacks.slowdown._adaptive import adaptive_attack, exit_features_jax, svm_decision, svm_parameters
from mexjax.attacks.slowdown._deepsloth import (
    NORMS,
    SlothConfig,
    apply_universal,
    attack,
    deepsloth_loss,
    universal,
)
from mexjax.attacks.slowdown._run import DEFENSES, efficacy_figure, outcome, plot_efficacy, run

__all__ = [
    "DEFENSES",
    "NORMS",
    "SlothConfig",
    "adaptive_attack",
    "apply_universal",
    "attack",
    "deepsloth_loss",
    "efficacy_figure",
    "exit_features_jax",
    "outcome",
    "plot_efficacy",
    "run",
    "svm_decision",
    "svm_parameters",
    "universal",
]
