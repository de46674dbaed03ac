"""DeepSloth: perturbations that make every internal classifier unsure, so nothing exits early.

The loss Σ_{i<K} CE(uniform, softmax_i(x + δ)) over the internal classifiers (the final exit is left
alone) is minimized by projected gradient descent: per sample under an L∞ or L2 bound, or one
universal δ for all inputs. Everything runs under jit in fixed-size chunks, so a whole test set costs
one compilation. Images are float32 NHWC in [0, 1] (uint8 is scaled by 1/255).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mexjax.attacks._pgd import NORMS, in_chunks, pgd
from mexjax.nets import MultiExitNet


def deepsloth_loss(logits: Sequence[jax.Array]) -> jax.Array:
    """Σ over the internal classifiers (all exits but the last) of CE(uniform, softmax): f32[B].

    Zero is impossible (log C per exit at best); lower = less confident early exits."""
    if len(logits) < 2:
        raise ValueError("DeepSloth needs a multi-exit network (at least one internal classifier)")
    total = jnp.zeros(logits[0].shape[0], jnp.float32)
    for z in logits[:-1]:
        total = total - jnp.mean(jax.nn.log_softmax(z.astype(jnp.float32), axis=-1), axis=-1)
    return total


@dataclasses.dataclass(frozen=True)
class SlothConfig:
    """PGD settings. Defaults: L∞, ε = 8/255, step 2/255, 30 steps (METHODS §4)."""

    norm: str = "linf"
    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 30
    batch_size: int = 128  # images per jit call (the last chunk is padded, never recompiled)

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {self.norm!r}")
        if not self.eps > 0 or not self.step > 0:
            raise ValueError(f"need eps > 0 and step > 0; got eps={self.eps}, step={self.step}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("need steps >= 1 and batch_size >= 1")


def _loss_fn(net: MultiExitNet, variables, x):
    return jnp.sum(deepsloth_loss(net.apply(variables, x)))


@functools.partial(jax.jit, static_argnames=("net", "norm", "steps"))
def _pgd_chunk(net, variables, x, eps, step, *, norm, steps):
    return pgd(lambda xx: _loss_fn(net, variables, xx), x, eps, step, norm=norm, steps=steps)


def _check(net: MultiExitNet, images) -> np.ndarray:
    if net.num_exits < 2:
        raise ValueError("DeepSloth needs a multi-exit network; this one has a single exit")
    x = np.asarray(net.check_inputs(images))
    if x.min() < 0 or x.max() > 1:
        raise ValueError(
            f"images span [{x.min():.3g}, {x.max():.3g}] but the model takes [0, 1]: pass uint8 images or "
            "float images scaled to [0, 1], not normalized ones (the net normalizes inside)"
        )
    return x


def attack(net: MultiExitNet, variables, images, config: SlothConfig = SlothConfig(), *, progress=True):
    """Per-sample DeepSloth PGD on `net` (white box). Returns float32 [N, H, W, C] in [0, 1].

    For a black-box attack, pass a surrogate (e.g. a stolen model) and feed the result to the victim."""
    x = _check(net, images)
    eps, step = jnp.float32(config.eps), jnp.float32(config.step)

    def chunk(batch):
        return _pgd_chunk(net, variables, batch, eps, step, norm=config.norm, steps=config.steps)

    return in_chunks(chunk, x, config.batch_size, desc=f"DeepSloth {config.norm}", progress=progress)


@functools.partial(jax.jit, static_argnames=("net",))
def _universal_step(net, variables, x, delta, eps, step):
    g = jax.grad(lambda d: _loss_fn(net, variables, jnp.clip(x + d[None], 0.0, 1.0)))(delta)
    return jnp.clip(delta - step * jnp.sign(g), -eps, eps)


def universal(net: MultiExitNet, variables, images, *, eps=8 / 255, step=0.005, epochs=20, batch_size=128,
              key=None, progress=True) -> np.ndarray:  # fmt: skip
    """One L∞ perturbation δ [H, W, C] for every input (universal DeepSloth): `epochs` passes over
    `images` in shuffled batches, a signed-gradient step of the mean loss per batch. Apply it with
    `apply_universal`."""
    if not eps > 0 or not step > 0 or epochs < 1:
        raise ValueError(f"need eps > 0, step > 0 and epochs >= 1; got {eps}, {step}, {epochs}")
    x = _check(net, images)
    key = jax.random.key(0) if key is None else key
    size = min(batch_size, len(x))
    delta = jnp.zeros(x.shape[1:], jnp.float32)
    for _ in tqdm(range(epochs), desc="universal DeepSloth", disable=not progress):
        key, sub = jax.random.split(key)
        order = np.asarray(jax.random.permutation(sub, len(x)))
        for start in range(0, len(x) - size + 1, size):
            batch = jnp.asarray(x[order[start : start + size]])
            delta = _universal_step(net, variables, batch, delta, jnp.float32(eps), jnp.float32(step))
    return np.asarray(delta)


def apply_universal(images, delta) -> np.ndarray:
    """images (uint8 or float in [0, 1]) + δ, clipped to [0, 1]: float32."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.clip(x + np.asarray(delta, np.float32)[None], 0.0, 1.0)
