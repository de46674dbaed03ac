"""The losses of the multi-exit stealing attack (METHODS §3.4-3.5), per example ([B])."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mexjax.train import cross_entropy, kl_divergence


def performance_loss(student_logits: Sequence[jax.Array], victim_probs: jax.Array) -> jax.Array:
    """Σ_i KL(V(x) ‖ S_i(x)) over the student's exits: f32[B]. victim_probs f32[B, C]."""
    total = jnp.zeros(victim_probs.shape[0], jnp.float32)
    for logits in student_logits:
        total = total + kl_divergence(victim_probs, logits)
    return total


def label_loss(student_logits: Sequence[jax.Array], victim_labels: jax.Array) -> jax.Array:
    """Labels-only victims: Σ_i CE(victim label, S_i(x)): f32[B]."""
    total = jnp.zeros(victim_labels.shape[0], jnp.float32)
    for logits in student_logits:
        total = total + cross_entropy(logits, victim_labels)
    return total


def strategy_loss(
    student_logits: Sequence[jax.Array],
    target_exits: jax.Array,
    *,
    phi1: float = 0.95,
    phi2: float = 0.90,
    squared: bool = False,
) -> jax.Array:
    """Push the confidence at each query's target exit e(x) above phi1 (unless e is the last exit) and
    every earlier exit's confidence below phi2: f32[B]. target_exits int32[B], 0-based."""
    conf = jnp.stack(
        [jnp.max(jax.nn.softmax(lg.astype(jnp.float32), axis=-1), axis=-1) for lg in student_logits]
    )
    k = conf.shape[0]
    idx = jnp.arange(k)[:, None]
    e = target_exits.astype(jnp.int32)[None, :]
    hinge = (lambda v: jnp.square(jnp.maximum(v, 0.0))) if squared else (lambda v: jnp.maximum(v, 0.0))
    at_exit = jnp.logical_and(idx == e, e < k - 1)
    before = idx < e
    return jnp.sum(
        jnp.where(at_exit, hinge(phi1 - conf), 0.0) + jnp.where(before, hinge(conf - phi2), 0.0), axis=0
    )
