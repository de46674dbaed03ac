"""Detecting slowdown inputs: an RBF SVM on what the victim's exits say about an image (METHODS §4).

Features are the victim's own per-exit outputs: the top-1 probability and the normalized entropy at
every exit (2K numbers). DeepSloth drives the internal classifiers towards uniform outputs, which these
features see directly; an adaptive attacker must keep them looking clean while still slowing the net.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def exit_features(probs, *, check: bool = True) -> jax.Array:
    """probs f32[K, N, C] (every exit's softmax) -> f32[N, 2K]: top-1 probability and entropy/log C.

    One definition for the detector and for the adaptive attack, which differentiates through it under
    jit (there `check=False`: the input check needs concrete values)."""
    if check:
        p = np.asarray(probs)
        if p.ndim != 3 or p.shape[0] < 2:
            raise ValueError(f"expected per-exit probabilities [K >= 2, N, C]; got shape {p.shape}")
        if np.isnan(p).any() or p.min() < 0 or not np.allclose(p.sum(-1), 1, atol=1e-3):
            raise ValueError("expected probabilities (softmax outputs), not logits: rows must sum to 1")
    p = jnp.asarray(probs, jnp.float32)
    top = p.max(-1)
    entropy = -jnp.sum(p * jnp.log(jnp.clip(p, 1e-12, 1.0)), axis=-1) / jnp.log(jnp.float32(p.shape[-1]))
    return jnp.concatenate([top, entropy], axis=0).T


@dataclasses.dataclass
class Detector:
    """A fitted scikit-learn pipeline (standardize, RBF SVM); label 1 = attacked."""

    model: object

    def score(self, features) -> np.ndarray:
        """Signed distance to the boundary: > 0 reads as attacked."""
        return self.model.decision_function(np.asarray(features))

    def predict(self, features) -> np.ndarray:
        return self.model.predict(np.asarray(features)).astype(np.int32)


def fit_detector(clean_features, attacked_features, *, c: float = 1.0, gamma="scale") -> Detector:
    """Train the RBF SVM on clean (label 0) vs attacked (label 1) feature rows."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    clean, attacked = np.asarray(clean_features), np.asarray(attacked_features)
    if len(clean) == 0 or len(attacked) == 0:
        raise ValueError(
            f"the detector needs both classes: got {len(clean)} clean and {len(attacked)} attacked rows"
        )
    if clean.ndim != 2 or attacked.ndim != 2 or clean.shape[1] != attacked.shape[1]:
        raise ValueError(f"feature rows must match: {clean.shape} vs {attacked.shape}")
    x = np.concatenate([clean, attacked])
    y = np.concatenate([np.zeros(len(clean), np.int32), np.ones(len(attacked), np.int32)])
    model = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=c, gamma=gamma))
    return Detector(model.fit(x, y))


def detection_report(detector: Detector, clean_features, attacked_features) -> dict:
    """Accuracy (balanced classes as given) and ROC AUC on held-out clean vs attacked rows; the share of
    attacked rows caught (`detected_attacks`: 1 minus the adaptive attacker's success) and of clean rows
    flagged (`false_alarms`)."""
    from sklearn.metrics import roc_auc_score

    clean, attacked = np.asarray(clean_features), np.asarray(attacked_features)
    if len(clean) == 0 or len(attacked) == 0:
        raise ValueError("the report needs clean and attacked rows")
    x = np.concatenate([clean, attacked])
    y = np.concatenate([np.zeros(len(clean)), np.ones(len(attacked))])
    predicted = detector.predict(x)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "auc": float(roc_auc_score(y, detector.score(x))),
        "detected_attacks": float(np.mean(predicted[len(clean) :] == 1)),
        "false_alarms": float(np.mean(predicted[: len(clean)] == 1)),
    }
