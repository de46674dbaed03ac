"""The output strategy: per-exit confidence thresholds decide where each sample leaves.

Exit indices are 0-based: a sample leaves at the first exit i < K-1 whose confidence (max softmax)
is >= thresholds[i], otherwise at the last exit K-1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def probabilities(logits: jax.Array) -> jax.Array:
    """Softmax in float32: f32[..., C]."""
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def confidence(probs: jax.Array) -> jax.Array:
    """Max-softmax confidence of probabilities f32[..., C] -> f32[...]."""
    return jnp.max(probs, axis=-1)


def check_thresholds(thresholds, num_exits: int) -> np.ndarray:
    """Validate thresholds (length K-1, finite, in [0, 1]); returns them as float32 numpy."""
    arr = np.asarray(thresholds, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != num_exits - 1:
        raise ValueError(
            f"a {num_exits}-exit network needs {num_exits - 1} thresholds (one per exit but the "
            f"last); got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"thresholds must be finite and within [0, 1]; got {arr.tolist()}")
    arr = arr.astype(np.float32)
    # XLA on CPU flushes subnormal floats to zero; flush them here too so host-side comparisons
    # (batch-1 early exit) decide exactly as the device does.
    arr[arr < np.finfo(np.float32).tiny] = 0.0
    return arr


def assign(confidences: jax.Array, thresholds: jax.Array) -> jax.Array:
    """Exit of every sample: confidences f32[B, K], thresholds f32[K-1] -> int32[B] (0-based)."""
    if confidences.ndim != 2 or thresholds.ndim != 1 or thresholds.shape[0] != confidences.shape[1] - 1:
        raise ValueError(
            f"need confidences [B, K] and thresholds [K-1]; got {confidences.shape} and {thresholds.shape}"
        )
    meets = confidences[:, :-1] >= thresholds.astype(confidences.dtype)[None, :]
    meets = jnp.concatenate([meets, jnp.ones((confidences.shape[0], 1), bool)], axis=1)
    return jnp.argmax(meets, axis=1).astype(jnp.int32)


def select(per_exit: jax.Array, exits: jax.Array) -> jax.Array:
    """Pick each sample's row at its exit: per_exit [K, B, ...], exits int32[B] -> [B, ...]."""
    return jnp.take_along_axis(per_exit, exits.reshape(1, -1, *([1] * (per_exit.ndim - 2))), axis=0)[0]
