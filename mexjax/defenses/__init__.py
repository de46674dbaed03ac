"""Defenses: input transforms against slowdown perturbations, and their detection (METHODS §4).

jpeg(images, quality), smooth(images, h, patch, search)       pure input transforms (same dtype out)
exit_features(probs) -> [N, 2K]; fit_detector; detection_report  RBF-SVM detection of attacked inputs
"""

from mexjax.defenses._detect import Detector, detection_report, exit_features, fit_detector
from mexjax.defenses._input import jpeg, smooth

__all__ = ["Detector", "detection_report", "exit_features", "fit_detector", "jpeg", "smooth"]
