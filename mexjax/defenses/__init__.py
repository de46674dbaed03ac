"""Defenses of multi-exit networks: input transforms and detection against slowdown (METHODS §4),
output perturbation and DivQAT against extraction (METHODS §6).

Public API:
Against slowdown
  jpeg(images, quality) / smooth(images, h, patch, search)   pure host-side input transforms (same dtype out)
  exit_features(probs f32[K, N, C]) -> f32[N, 2K]   top-1 and normalized entropy at every exit (traceable)
  fit_detector(clean, attacked) -> Detector         standardize + RBF SVM (scikit-learn); label 1 = attacked
  detection_report(detector, clean, attacked)       accuracy, ROC AUC, detected share, false alarms
Against extraction: output perturbation
  OutputDefense(init, apply)      a pure pair on probabilities, like an Optax transform; plugs into
                                  oracle.Oracle(defense=...) and oracle.DeployedModel
  reverse_sigmoid(beta, gamma) / dcp(gate, beta, gamma)   on every answer; only below a confidence gate
  chain(*defenses) / IDENTITY     defenses applied in order; the defense that changes nothing
  check_probabilities(probs)      raise if rows are not probabilities (e.g. logits were passed)
Against extraction: training time
  divqat(net, variables, train_set, config, alpha=...) / qat(...)   quantize, calibrate, fine-tune (α = 0)
  divqat_loss(alpha)              per exit CE − α·KL(float teacher ‖ quantized student), for train.fit
"""

from mexjax.defenses._detect import Detector, detection_report, exit_features, fit_detector
from mexjax.defenses._divqat import divqat, divqat_loss, qat
from mexjax.defenses._input import jpeg, smooth
from mexjax.defenses._output import (
    IDENTITY,
    OutputDefense,
    chain,
    check_probabilities,
    dcp,
    reverse_sigmoid,
)

__all__ = [
    "IDENTITY",
    "Detector",
    "OutputDefense",
    "chain",
    "check_probabilities",
    "dcp",
    "detection_report",
    "divqat",
    "divqat_loss",
    "exit_features",
    "fit_detector",
    "jpeg",
    "qat",
    "reverse_sigmoid",
    "smooth",
]
