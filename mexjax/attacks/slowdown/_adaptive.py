"""DeepSloth that adapts to a detector: slow the victim down *and* look clean to the SVM (METHODS §4).

The attacker knows the fitted detector (white box): its standardization and RBF SVM decision function
are rewritten in jax.numpy, so PGD can descend DeepSloth's loss plus a hinge on the decision value.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mexjax import defenses
from mexjax.attacks._pgd import in_chunks, pgd
from mexjax.attacks.slowdown._deepsloth import SlothConfig, _check, deepsloth_loss
from mexjax.defenses import Detector
from mexjax.nets import MultiExitNet


def svm_parameters(detector: Detector) -> dict:
    """The fitted scaler + RBF SVC as arrays: decision(f) = Σ_i c_i exp(-γ‖z(f) − s_i‖²) + b."""
    scaler, svc = detector.model[0], detector.model[-1]
    if getattr(svc, "kernel", None) != "rbf":
        raise ValueError("the adaptive attack models an RBF SVM detector (defenses.fit_detector)")
    return {
        "mean": jnp.asarray(scaler.mean_, jnp.float32),
        "scale": jnp.asarray(scaler.scale_, jnp.float32),
        "support": jnp.asarray(svc.support_vectors_, jnp.float32),
        "coef": jnp.asarray(svc.dual_coef_[0], jnp.float32),
        "bias": jnp.asarray(svc.intercept_[0], jnp.float32),
        "gamma": jnp.asarray(svc._gamma, jnp.float32),
    }


def svm_decision(params: dict, features: jax.Array) -> jax.Array:
    """The detector's decision value (> 0 reads as attacked) for feature rows f32[N, F]."""
    z = (features - params["mean"][None, :]) / params["scale"][None, :]
    d2 = jnp.sum((z[:, None, :] - params["support"][None]) ** 2, axis=-1)
    return jnp.exp(-params["gamma"] * d2) @ params["coef"] + params["bias"]


def _exit_features(logits) -> jax.Array:
    """The detector's features (`defenses.exit_features`) from the exits' logits, traceable: [N, 2K]."""
    probs = jnp.stack([jax.nn.softmax(z.astype(jnp.float32), axis=-1) for z in logits])
    return defenses.exit_features(probs, check=False)


@functools.partial(jax.jit, static_argnames=("net", "norm", "steps"))
def _adaptive_chunk(net, variables, x, params, eps, step, weight, margin, *, norm, steps):
    def loss(xx):
        logits = net.apply(variables, xx)
        hinge = jax.nn.relu(svm_decision(params, _exit_features(logits)) + margin)
        return jnp.sum(deepsloth_loss(logits) + weight * hinge)

    return pgd(loss, x, eps, step, norm=norm, steps=steps)


def adaptive_attack(
    net: MultiExitNet,
    variables,
    images,
    detector: Detector,
    config: SlothConfig | None = None,
    *,
    weight: float = 1.0,
    margin: float = 0.5,
) -> np.ndarray:
    """DeepSloth PGD with `weight` x max(0, detector decision + margin) added to the loss."""
    config = config or SlothConfig()
    if weight < 0:
        raise ValueError(f"weight must be >= 0; got {weight}")
    x = _check(net, images)
    params = svm_parameters(detector)
    eps, step = jnp.float32(config.eps), jnp.float32(config.step)

    def chunk(batch):
        return _adaptive_chunk(
            net, variables, batch, params, eps, step, jnp.float32(weight), jnp.float32(margin),
            norm=config.norm, steps=config.steps,
        )  # fmt: skip

    return in_chunks(chunk, x, config.batch_size, progress=False)
