"""What the SoK measures of a captioner: output length, BLEU-4, FLOPs per caption, decoding latency
(measured at batch 1), and the per-step outputs its SVM detector reads."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.captioning._bleu import bleu4
from mexjax.captioning._vocab import Vocabulary, tokenize
from mexjax.nets import Captioner


def step_probabilities(captioner: Captioner, variables, images, *, steps: int | None = None,
                       batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """Softmax of the first `steps` greedy decoding steps, f32[steps, N, vocab] (no stop at <eos>):
    the per-step outputs a detector reads, shaped like a multi-exit net's per-exit probabilities
    (so `defenses.exit_features` turns them into detector features)."""
    steps = steps or captioner.spec.max_len
    x = captioner.check_images(images)
    parts = [
        np.asarray(_step_softmax(captioner, variables, x[i : i + batch_size], steps))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts, axis=1)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _step_softmax(captioner, variables, x, steps):
    logits = captioner.free_running(variables, x, steps)
    return jnp.swapaxes(jax.nn.softmax(logits, axis=-1), 0, 1)


def decoding_latency(captioner: Captioner, variables, images, *, repeats: int = 3) -> np.ndarray:
    """Measured batch-1 wall time (seconds) of captioning each image (encoder + greedy decoding): the
    median of `repeats` timed calls after one warm-up call. It follows the caption's length, because
    the decoding loop stops at <eos>."""
    x = captioner.check_images(images)
    greedy = captioner.greedy_jit
    jax.block_until_ready(greedy(variables, x[:1]))  # compile once
    out = np.empty(len(x))
    for i in range(len(x)):
        one = x[i : i + 1]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(greedy(variables, one))
            times.append(time.perf_counter() - start)
        out[i] = np.median(times)
    return out


def caption_outcome(captioner: Captioner, variables, vocab: Vocabulary, images, references, *,
                    latency_images: int = 50) -> dict:  # fmt: skip
    """Captions of `images` scored against `references` (list per image of reference strings):
    mean words per caption (<eos> not counted), mean decoding steps, the share of captions cut at
    max_len, corpus BLEU-4, mean FLOPs per caption, the histogram of caption lengths, and the median
    batch-1 latency over the first `latency_images` images (0: not measured)."""
    if len(references) != len(images):
        raise ValueError(f"{len(images)} images but {len(references)} reference lists")
    tokens, steps = captioner.caption(variables, images)
    words = vocab.lengths(tokens)
    hypotheses = [tokenize(text) for text in vocab.decode(tokens)]
    refs = [[tokenize(r) for r in group] for group in references]
    result = {
        "words": float(np.mean(words)),
        "steps": float(np.mean(steps)),
        "cut_at_max_len": float(np.mean(steps >= captioner.spec.max_len)),
        "bleu4": bleu4(refs, hypotheses),
        "flops": float(np.mean(captioner.caption_flops(steps))),
        "length_histogram": np.bincount(words, minlength=captioner.spec.max_len + 1).tolist(),
        "example": vocab.decode(tokens[:1])[0],
    }
    if latency_images:
        latency = decoding_latency(captioner, variables, np.asarray(images)[:latency_images])
        result["latency_ms"] = float(1e3 * np.median(latency))
    return result
