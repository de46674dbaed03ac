"""Output perturbation defenses against model extraction (METHODS §6), shaped like Optax transforms.

A defense is a pair of pure functions: `init() -> state` and `apply(probs, state) -> (probs, state)`,
on probabilities f32[B, C] (rows on the simplex). The state is there for defenses that need one (a
random key, a query count); reverse sigmoid and DCP are stateless and keep an empty tuple. Defenses
compose with `chain`, plug into `oracle.Oracle(defense=...)`, and jit like any pure function.

Reverse sigmoid (Lee et al.): y' ∝ y − β·(σ(γ·σ⁻¹(y)) − ½), clipped at a small floor and renormalized:
it flattens confident answers and lifts small ones, so that the logits an attacker recovers from the
probabilities (log y) are distorted while top-1 mostly survives. DCP applies it only to answers whose
top-1 confidence is below a gate (confident answers, which leak little, pass unchanged).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

_FLOOR = 1e-6  # keeps every class's probability positive after the perturbation


class _Init(Protocol):
    def __call__(self) -> Any: ...


class _Apply(Protocol):
    def __call__(self, probs: jax.Array, state: Any) -> tuple[jax.Array, Any]: ...


class OutputDefense(NamedTuple):
    """Pure `init` / `apply` pair on probabilities (see the module docstring)."""

    init: _Init
    apply: _Apply


def check_probabilities(probs, *, atol: float = 1e-3) -> None:
    """Raise if `probs` [B, C] are not probabilities (e.g. logits were passed). Not traceable."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape [B, C >= 2]; got {p.shape}")
    if np.isnan(p).any() or p.min() < -atol or p.max() > 1 + atol or not np.allclose(p.sum(-1), 1, atol=atol):
        raise ValueError(
            "output defenses act on probabilities (softmax outputs, rows summing to 1), not on logits: "
            "apply jax.nn.softmax first"
        )


def _checked(probs):
    """Concrete inputs are checked (clear error for logits); traced ones (under jit) pass as they are."""
    if not isinstance(probs, jax.core.Tracer):
        check_probabilities(probs)
    return probs


def _reverse_sigmoid(probs, beta, gamma):
    y = jnp.clip(probs, _FLOOR, 1.0 - _FLOOR)
    logit = jnp.log(y) - jnp.log1p(-y)
    perturbed = jnp.maximum(y - beta * (jax.nn.sigmoid(gamma * logit) - 0.5), _FLOOR)
    return perturbed / jnp.sum(perturbed, axis=-1, keepdims=True)


def _check_parameters(beta: float, gamma: float) -> None:
    if not beta >= 0 or not gamma > 0:
        raise ValueError(f"reverse sigmoid needs beta >= 0 and gamma > 0; got beta={beta}, gamma={gamma}")


def reverse_sigmoid(beta: float = 0.7, gamma: float = 0.4) -> OutputDefense:
    """Reverse sigmoid on every answer; beta = strength (0 = none), gamma = steepness."""
    _check_parameters(beta, gamma)

    def apply(probs, state):
        return _reverse_sigmoid(_checked(probs), beta, gamma), state

    return OutputDefense(lambda: (), apply)


def dcp(gate: float = 0.9, beta: float = 0.7, gamma: float = 0.4) -> OutputDefense:
    """Reverse sigmoid only on answers whose top-1 probability is below `gate` (in (0, 1])."""
    _check_parameters(beta, gamma)
    if not 0 < gate <= 1:
        raise ValueError(f"the DCP gate is a top-1 confidence in (0, 1]; got {gate}")

    def apply(probs, state):
        probs = _checked(probs)
        unsure = jnp.max(probs, axis=-1, keepdims=True) < gate
        return jnp.where(unsure, _reverse_sigmoid(probs, beta, gamma), probs), state

    return OutputDefense(lambda: (), apply)


def chain(*defenses: OutputDefense) -> OutputDefense:
    """Apply `defenses` in order (states kept as a tuple, one per defense)."""

    def init():
        return tuple(d.init() for d in defenses)

    def apply(probs, state):
        new_states = []
        for d, s in zip(defenses, state, strict=True):
            probs, s = d.apply(probs, s)
            new_states.append(s)
        return probs, tuple(new_states)

    return OutputDefense(init, apply)


IDENTITY = OutputDefense(lambda: (), lambda probs, state: (probs, state))
