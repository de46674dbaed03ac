"""NICGSlowDown: perturbations that keep an image captioner from ending its caption (seed 001, SoK).

The loss is the <eos> log-probability summed over the decoding steps of greedy decoding run for the
whole `max_len` (each step reads the previous step's argmax, a constant of the gradient); PGD lowers it
under an L∞ or L2 bound, so the decoder writes longer captions and spends more steps (time, FLOPs). For
the black-box (transfer) setting, attack a surrogate captioner and give the result to the victim.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.attacks._pgd import NORMS, in_chunks, pgd
from mexjax.nets import Captioner

OBJECTIVES = ("logprob", "margin")


def eos_loss(logits: jax.Array, eos: int, objective: str = "logprob", kappa: float = 1.0) -> jax.Array:
    """The slowdown loss of free-running logits f32[B, T, vocab]: f32[B]; lower = the caption ends later.

    Only the steps greedy decoding really runs count: those up to and including the first step whose
    argmax is <eos> (later steps never run, and what they would read is the <eos> fed back).
    "logprob": Σ of log p(<eos>) over those steps (NICGSlowDown's objective). Its gradient vanishes at the
    step where p(<eos>) is near 1 (d log p / d logit = 1 - p), the one step that ends the caption, so
    "margin" is offered beside it: Σ of max(0, logit(<eos>) - max other logit + kappa), a hinge that
    counts only the steps where <eos> wins or nearly wins, and does not saturate."""
    z = logits.astype(jnp.float32)
    ends = (jnp.argmax(z, axis=-1) == eos).astype(jnp.int32)
    runs = jax.lax.stop_gradient((jnp.cumsum(ends, axis=1) - ends) == 0).astype(jnp.float32)
    if objective == "logprob":
        per_step = jax.nn.log_softmax(z, axis=-1)[..., eos]
    elif objective == "margin":
        others = jnp.max(z.at[..., eos].set(-jnp.inf), axis=-1)
        per_step = jax.nn.relu(z[..., eos] - others + kappa)
    else:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    return jnp.sum(per_step * runs, axis=1)


@dataclasses.dataclass(frozen=True)
class NICGConfig:
    """PGD settings. L∞: ε = 8/255, step 1/255. L2 (`NICGConfig.l2()`): ε = 1.0 (pixel units in
    [0, 1] over the whole image), step 0.1, the bound and the step shrunk by 0.9 every 50 steps.
    `decode_steps`: how many steps the loss follows (default: the captioner's max_len); `objective`:
    see `eos_loss`."""

    norm: str = "linf"
    eps: float = 8 / 255
    step: float = 1 / 255
    steps: int = 100
    decode_steps: int | None = None
    shrink_every: int = 0  # 0: constant bound
    shrink: float = 0.9
    batch_size: int = 64
    objective: str = "logprob"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {self.objective!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {self.norm!r}")
        if not self.eps > 0 or not self.step > 0:
            raise ValueError(f"need eps > 0 and step > 0; got eps={self.eps}, step={self.step}")
        if self.steps < 1 or self.batch_size < 1 or self.shrink_every < 0 or not 0 < self.shrink <= 1:
            raise ValueError("need steps >= 1, batch_size >= 1, shrink_every >= 0 and 0 < shrink <= 1")
        if self.decode_steps is not None and self.decode_steps < 1:
            raise ValueError(f"decode_steps must be >= 1; got {self.decode_steps}")

    @classmethod
    def l2(cls, **overrides) -> NICGConfig:
        return cls(**{"norm": "l2", "eps": 1.0, "step": 0.1, "shrink_every": 50, **overrides})


_STATIC = ("captioner", "norm", "steps", "decode_steps", "shrink_every", "objective")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _nicg_chunk(captioner, variables, x, eps, step, shrink, *, norm, steps, decode_steps, shrink_every,
                objective):  # fmt: skip
    def loss(images):
        logits = captioner.free_running(variables, images, decode_steps)
        return jnp.sum(eos_loss(logits, captioner.spec.eos, objective))

    schedule = None
    if shrink_every:

        def schedule(i):
            return shrink ** (i // shrink_every).astype(jnp.float32)

    return pgd(loss, x, eps, step, norm=norm, steps=steps, step_schedule=schedule)


def nicg_attack(captioner: Captioner, variables, images, config: NICGConfig = NICGConfig(), *,
                progress: bool = True) -> np.ndarray:  # fmt: skip
    """Per-image NICGSlowDown PGD on `captioner` (white box, or a surrogate for transfer): float32
    images [N, H, W, C] in [0, 1]."""
    x = np.asarray(captioner.check_images(images))
    decode_steps = config.decode_steps or captioner.spec.max_len
    eps, step, shrink = jnp.float32(config.eps), jnp.float32(config.step), jnp.float32(config.shrink)

    def chunk(batch):
        return _nicg_chunk(
            captioner, variables, batch, eps, step, shrink, norm=config.norm, steps=config.steps,
            decode_steps=decode_steps, shrink_every=config.shrink_every, objective=config.objective,
        )  # fmt: skip

    return in_chunks(chunk, x, config.batch_size, desc=f"NICGSlowDown {config.norm}", progress=progress)
