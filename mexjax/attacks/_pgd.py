"""Projected gradient descent on images: the one loop every perturbation attack here runs.

`pgd` is traceable (call it inside jit): it minimizes a per-batch loss over δ with ‖δ‖ ≤ ε (L∞: signed
gradient steps; L2: normalized gradient steps, per sample) and keeps x + δ a valid image in [0, 1].
`in_chunks` runs a jitted attack over a host array in fixed-size chunks (the last one padded), so a
whole set costs one compilation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

NORMS = ("linf", "l2")


def project(delta, eps, norm: str):
    """δ projected onto the ε-ball of `norm` (per sample for L2)."""
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    flat = delta.reshape(delta.shape[0], -1)
    norms = jnp.sqrt(jnp.sum(flat * flat, axis=1, keepdims=True))
    scale = jnp.minimum(1.0, eps / jnp.maximum(norms, 1e-12))
    return (flat * scale).reshape(delta.shape)


def descent(grad, norm: str):
    """The steepest-descent direction of unit `norm` for a gradient (sign for L∞)."""
    if norm == "linf":
        return jnp.sign(grad)
    flat = grad.reshape(grad.shape[0], -1)
    norms = jnp.sqrt(jnp.sum(flat * flat, axis=1, keepdims=True))
    return (flat / jnp.maximum(norms, 1e-12)).reshape(grad.shape)


def pgd(loss, x, eps, step, *, norm: str, steps: int, step_schedule=None):
    """Minimize `loss(images) -> scalar` over x + δ, ‖δ‖_norm ≤ ε, by `steps` PGD steps from δ = 0.

    step_schedule(i) -> multiplier of `step` and `eps` at iteration i (default: constant), for attacks
    that shrink their bound as they go (L2 NICGSlowDown's). Returns the perturbed images in [0, 1]."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
    grad_fn = jax.grad(loss)

    def body(i, delta):
        scale = 1.0 if step_schedule is None else step_schedule(i)
        g = grad_fn(jnp.clip(x + delta, 0.0, 1.0))
        delta = project(delta - scale * step * descent(g, norm), scale * eps, norm)
        return jnp.clip(x + delta, 0.0, 1.0) - x  # stay a valid image

    delta = jax.lax.fori_loop(0, steps, body, jnp.zeros_like(x))
    return jnp.clip(x + delta, 0.0, 1.0)


def in_chunks(attack_chunk, x: np.ndarray, batch_size: int, *, desc: str = "", progress: bool = True):
    """attack_chunk(jax images [size, ...]) -> images, run over host images x in chunks of one size."""
    size = min(batch_size, len(x))
    out = np.empty_like(x)
    chunks = range(0, len(x), size)
    for start in tqdm(chunks, desc=desc, disable=not progress or len(chunks) < 2):
        part = x[start : start + size]
        padded = np.concatenate([part, np.zeros((size - len(part), *x.shape[1:]), x.dtype)])
        out[start : start + len(part)] = np.asarray(attack_chunk(jnp.asarray(padded)))[: len(part)]
    return out
