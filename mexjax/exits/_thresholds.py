"""Choosing a victim's thresholds on held-out data.

The SDN way: one global threshold q for every IC, the smallest candidate whose early-exit accuracy
stays within `max_drop` of the final exit's accuracy (smaller q = earlier exits = cheaper).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.exits._policy import assign, confidence


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    threshold: float  # the chosen global q
    thresholds: np.ndarray  # f32[K-1], q repeated
    accuracy: float  # early-exit accuracy at q on the held-out data
    final_accuracy: float  # accuracy of the last exit alone
    candidates: np.ndarray  # every q tried
    candidate_accuracy: np.ndarray  # early-exit accuracy at each q
    candidate_exit_share: np.ndarray  # [Q, K] share of samples leaving at each exit


def policy_outcome(probs: jax.Array, labels: jax.Array, thresholds: jax.Array):
    """Accuracy and exits under thresholds: probs f32[K, N, C] -> (accuracy, exits int32[N])."""
    exits = assign(confidence(probs).T, thresholds)
    predicted = jnp.argmax(jnp.take_along_axis(probs, exits[None, :, None], axis=0)[0], axis=-1)
    return jnp.mean((predicted == labels).astype(jnp.float32)), exits


def sdn_global_threshold(probs, labels, *, max_drop: float = 0.02, candidates=None) -> ThresholdChoice:
    """Pick one global threshold (see module docstring). probs f32[K, N, C] of held-out data."""
    probs = jnp.asarray(probs, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    if probs.ndim != 3 or probs.shape[1] != labels.shape[0] or probs.shape[0] < 2:
        raise ValueError(f"need probs [K >= 2, N, C] and labels [N]; got {probs.shape} and {labels.shape}")
    if not 0 <= max_drop <= 1:
        raise ValueError(f"max_drop is a fraction of accuracy in [0, 1]; got {max_drop}")
    candidates = np.asarray(
        np.round(np.arange(0.30, 1.0, 0.01), 2) if candidates is None else candidates, np.float32
    )
    if candidates.ndim != 1 or candidates.size == 0 or candidates.min() < 0 or candidates.max() > 1:
        raise ValueError("candidates must be a non-empty list of thresholds in [0, 1]")
    candidates = np.sort(candidates)
    num_exits = probs.shape[0]

    def outcome(q, probs, labels):  # data as arguments: closed-over arrays would be constant-folded
        acc, exits = policy_outcome(probs, labels, jnp.full((num_exits - 1,), q, jnp.float32))
        share = jnp.mean((exits[:, None] == jnp.arange(num_exits)[None, :]).astype(jnp.float32), axis=0)
        return acc, share

    accs, shares = jax.jit(jax.vmap(outcome, in_axes=(0, None, None)))(jnp.asarray(candidates), probs, labels)
    accs, shares = np.asarray(accs), np.asarray(shares)
    final = float(np.mean(np.asarray(jnp.argmax(probs[-1], -1) == labels)))
    ok = np.nonzero(accs >= final - max_drop)[0]
    pick = int(ok[0]) if ok.size else len(candidates) - 1
    q = float(candidates[pick])
    return ThresholdChoice(
        threshold=q,
        thresholds=np.full(num_exits - 1, q, np.float32),
        accuracy=float(accs[pick]),
        final_accuracy=final,
        candidates=candidates,
        candidate_accuracy=accs,
        candidate_exit_share=shares,
    )
