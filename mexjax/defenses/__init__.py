"""Defenses: input transforms against slowdown perturbations, and their detection (METHODS §4).

jpeg(images, quality), smooth(images, h, patch, search)       pure input transforms (same dtype out)
exit_features(probs) -> [N, 2K]; fit_detector; detection_report  RBF-SVM detection of attacked inputs
reverse_sigmoid(beta, gamma), dcp(gate, beta, gamma), chain(...)  output perturbations against extraction:
    OutputDefense(init, apply) pairs on probabilities, pluggable into oracle.Oracle(defense=...)
divqat(net, variables, train_set, config, alpha), qat(...), divqat_loss(alpha)   training-time defense
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
