"""DivQAT (seed 003, METHODS §6): quantization-aware training that pushes the quantized model's
outputs away from the float teacher's, so that what an attacker distils from the deployed (quantized)
model is a worse copy of the float model, while the defender's accuracy stays.

Loss per example and exit i: CE(y, student_i) − α · KL(teacher_i ‖ student_i), summed over the exits
with the training recipe's exit weights. The teacher is the frozen float model (its probabilities on
the training images are computed once); the student is its fake-quantized copy (`nets.quantize`),
calibrated, then fine-tuned. α = 0 is plain QAT.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from mexjax import nets, train
from mexjax.train import cross_entropy, kl_divergence


def divqat_loss(alpha: float):
    """`loss(logits, labels, extras, weights) -> f32[B]` for `train.fit`; extras["teacher"] holds the
    teacher's probabilities f32[B, K, C]."""
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0 (0 = plain QAT); got {alpha}")

    def loss(logits, labels, extras, weights):
        teacher = extras["teacher"]
        per_exit = []
        for i, lg in enumerate(logits):
            per_exit.append(cross_entropy(lg, labels) - alpha * kl_divergence(teacher[:, i], lg))
        return jnp.sum(weights.astype(jnp.float32)[:, None] * jnp.stack(per_exit), axis=0)

    return loss


def divqat(
    net: nets.MultiExitNet,
    variables,
    train_set,
    config: train.TrainConfig,
    *,
    alpha: float,
    weight_bits: int = 8,
    activation_bits: int = 8,
    calibration_images: int = 512,
    workdir=None,
    progress: bool = True,
):
    """Quantize `net` (float, trained), calibrate it on the first training images and fine-tune it
    with the DivQAT loss. Returns (quantized net, its variables, history).

    Augmentation is switched off: the teacher's answers are computed once on the images as given."""
    loss = divqat_loss(alpha)
    qnet = nets.quantize(net, weight_bits=weight_bits, activation_bits=activation_bits)
    qvariables = nets.calibrate(qnet, variables, train_set.images[:calibration_images])
    teacher = np.transpose(train.predict(net, variables, train_set.images), (1, 0, 2))  # [N, K, C]
    tuned, history = train.fit(
        qnet,
        train_set,
        dataclasses.replace(config, augment=False),
        variables=qvariables,
        extras={"teacher": teacher},
        loss=loss,
        workdir=workdir,
        progress=progress,
        meta_extra={"defense": "divqat", "alpha": float(alpha), "bits": [weight_bits, activation_bits]},
    )
    return qnet, tuned, history


def qat(net, variables, train_set, config, **kwargs):
    """Plain quantization-aware fine-tuning: `divqat` with alpha = 0."""
    return divqat(net, variables, train_set, config, alpha=0.0, **kwargs)
