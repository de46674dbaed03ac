"""Per-example losses (shape [B]); callers reduce. The SDN weighted loss and its schedule."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits f32[B, C], int labels [B] -> f32[B]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
    """Cross-entropy against a probability vector (distillation): f32[B]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(target_probs.astype(jnp.float32) * log_probs, axis=-1)


def kl_divergence(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """KL(target ‖ softmax(logits)) per example, f32[B] (distillation and extraction losses); target
    probabilities below 1e-12 enter the log as 1e-12, so a one-hot or underflowed target stays finite."""
    p = target_probs.astype(jnp.float32)
    log_p = jnp.log(jnp.clip(p, 1e-12, 1.0))
    return jnp.sum(p * (log_p - jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)), axis=-1)


def sdn_max_weights(num_ics: int) -> tuple[float, ...]:
    """C_i of the SDN schedule: .15, .30, ..., .90 for six ICs; spread up to .9 for other counts."""
    return tuple(float(w) for w in np.round(0.9 * np.arange(1, num_ics + 1) / num_ics, 6))


def sdn_weights(epoch: int, num_epochs: int, num_exits: int) -> np.ndarray:
    """Loss weight of every exit at `epoch` (0-based) of `num_epochs`: τ_i = min(C_i, 0.01 + e·C_i/E),
    the final exit always 1."""
    caps = np.asarray(sdn_max_weights(num_exits - 1))
    ics = np.minimum(caps, 0.01 + epoch * caps / num_epochs)
    return np.concatenate([ics, [1.0]]).astype(np.float32)


def sdn_loss(logits: Sequence[jax.Array], labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_i weights[i] · CE(exit i): per-example f32[B]."""
    per_exit = jnp.stack([cross_entropy(lg, labels) for lg in logits])  # [K, B]
    return jnp.sum(weights.astype(jnp.float32)[:, None] * per_exit, axis=0)
