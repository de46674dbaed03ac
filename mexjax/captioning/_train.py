"""Teacher-forced training of a captioner with Optax, and the captioning metrics of the SoK.

Training minimizes the cross-entropy of every next token given the true previous ones (the <eos> target
included, padding masked out), with AdamW under a warm-up + cosine schedule and gradient clipping.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mexjax.nets import Captioner


@dataclasses.dataclass(frozen=True)
class CaptionTrainConfig:
    """Defaults train a width-1/4 captioner on the generated shapes task in a few CPU minutes."""

    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int | None = None  # None: a tenth of the steps, at most 100
    clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1 and learning_rate > 0; got {self}")
        if self.warmup is not None and not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup must be in 0..steps-1; got {self.warmup} of {self.steps}")


def caption_loss(captioner: Captioner, variables, images, tokens):
    """Mean next-token cross-entropy over the real (non-pad) targets; also the new batch statistics."""
    carry, batch_stats = captioner.encode(variables, images, train=True)
    logits = captioner.teacher_forced(variables, carry, tokens[:, :-1])
    targets = tokens[:, 1:]
    mask = (targets != captioner.spec.pad).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0), batch_stats


def _check_tokens(captioner: Captioner, tokens, count: int) -> np.ndarray:
    t = np.asarray(tokens)
    if t.ndim != 2 or len(t) != count or t.shape[1] < 2 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"tokens must be int [N={count}, T >= 2] (encoded captions); got {t.dtype}{t.shape}")
    if t.min() < 0 or t.max() >= captioner.spec.vocab_size:
        raise ValueError(
            f"token ids must lie in 0..{captioner.spec.vocab_size - 1}: encode with its vocabulary"
        )
    if not np.all(t[:, 0] == captioner.spec.bos):
        raise ValueError("every encoded caption must start with <bos> (Vocabulary.encode does this)")
    return t.astype(np.int32)


def train_captioner(captioner: Captioner, images, tokens, config: CaptionTrainConfig = CaptionTrainConfig(),
                    *, variables=None, progress: bool = True) -> tuple[dict, list[float]]:  # fmt: skip
    """Train (or, given `variables`, fine-tune) on images [N, H, W, C] and their encoded captions
    int32 [N, T]. Returns (variables, the loss every 50 steps)."""
    x = np.asarray(captioner.check_images(images))
    t = _check_tokens(captioner, tokens, len(x))
    if variables is None:
        variables = captioner.init(jax.random.key(config.seed))
    warmup = min(100, config.steps // 10) if config.warmup is None else config.warmup
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, config.steps, config.learning_rate * 0.01
    )
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.clip), optax.adamw(schedule, weight_decay=config.weight_decay)
    )
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, batch_stats, opt_state, images, tokens):
        def loss_fn(p):
            return caption_loss(captioner, {"params": p, "batch_stats": batch_stats}, images, tokens)

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    rng = np.random.default_rng(config.seed)
    size = min(config.batch_size, len(x))
    history, order, cursor = [], rng.permutation(len(x)), 0
    bar = tqdm(range(config.steps), desc="captioner", disable=not progress)
    for step in bar:
        if cursor + size > len(x):
            order, cursor = rng.permutation(len(x)), 0
        idx = order[cursor : cursor + size]
        cursor += size
        params, batch_stats, opt_state, loss = train_step(params, batch_stats, opt_state, x[idx], t[idx])
        if step % 50 == 0 or step == config.steps - 1:
            value = float(loss)
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"the caption loss became {value} at step {step}: lower learning_rate"
                )
            history.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
    return {"params": params, "batch_stats": batch_stats}, history
