"""Slowdown attacks on multi-exit networks (seed 001, METHODS §4).

deepsloth_loss(logits) -> f32[B]                      Σ_{i<K} CE(uniform, softmax_i)
attack(net, variables, images, SlothConfig) -> images per-sample PGD (L∞ or L2), white box or on a surrogate
universal(net, variables, images) -> δ                one L∞ perturbation for all inputs; apply_universal
"""

from mexjax.attacks.slowdown._deepsloth import (
    NORMS,
    SlothConfig,
    apply_universal,
    attack,
    deepsloth_loss,
    universal,
)

__all__ = ["NORMS", "SlothConfig", "apply_universal", "attack", "deepsloth_loss", "universal"]
