"""The baselines of the multi-exit stealing attack (METHODS §3.8), on the same footing as ours.

Every baseline trains the same student (the attacker's backbone with the given number of exits) by
soft-label distillation at every exit, without timing and without the strategy loss, under the same
query budget, and gives it one global threshold chosen on its own queries (SDN rule). They differ
only in where the queries come from:

- KnockoffNets: natural images of an unrelated set (the attacker's pool);
- Noise: random noise images (uniform, or Gaussian around given channel statistics);
- ES Attack (OPT-SYN): synthetic images optimized so the current student outputs a random target
  distribution (Dirichlet), queried round after round while the student learns from all answers.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mexjax import data, oracle
from mexjax.attacks.steal.student_training import (
    StealConfig,
    StealResult,
    build_student,
    choose_thresholds,
    train_student,
)
from mexjax.attacks.steal.timing import timing_attack
from mexjax.train import kl_divergence


def _baseline_config(config: StealConfig) -> StealConfig:
    if config.num_exits is None:
        raise ValueError(
            "a baseline does not read the timing: give the student's number of exits (num_exits), e.g. "
            "the number the timing attack estimated, so that all methods train the same student"
        )
    return dataclasses.replace(config, use_timing=False, passes=1)


def knockoff(
    victim: oracle.BlackBox,
    queries: np.ndarray,
    config: StealConfig,
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> StealResult:
    """KnockoffNets: distil the victim's answers on natural `queries` (uint8 images)."""
    result = timing_attack(victim, queries, _baseline_config(config), workdir=workdir, progress=progress)
    return dataclasses.replace(result, method="knockoff")


def noise_attack(
    victim: oracle.BlackBox,
    num_queries: int,
    config: StealConfig,
    *,
    kind: str = "uniform",
    mean=0.5,
    std=0.25,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> StealResult:
    """Noise: distil the victim's answers on `num_queries` random noise images."""
    config = _baseline_config(config)
    key = jax.random.fold_in(jax.random.key(config.seed), 0x0015E)
    queries = data.noise_images(key, num_queries, victim.input_shape, kind=kind, mean=mean, std=std)
    result = timing_attack(victim, queries, config, workdir=workdir, progress=progress)
    return dataclasses.replace(result, method="noise")


@dataclasses.dataclass(frozen=True)
class ESAConfig:
    """ES Attack's synthesis (OPT-SYN): rounds of queries, each made by optimizing random images."""

    rounds: int = 5  # the budget is split evenly over the rounds; round 0 queries random images
    steps: int = 30  # Adam steps per synthetic batch
    step_size: float = 0.1  # Adam's learning rate on the images' pixel logits
    alpha: float = 1.0  # Dirichlet concentration of the target distributions
    epochs_per_round: int | None = None  # None: config.epochs // rounds (at least 1)
    synth_batch: int = 256

    def __post_init__(self):
        if self.rounds < 1 or self.steps < 0 or self.step_size <= 0 or self.alpha <= 0:
            raise ValueError("need rounds >= 1, steps >= 0, step_size > 0 and alpha > 0")
        if self.synth_batch < 1 or (self.epochs_per_round is not None and self.epochs_per_round < 1):
            raise ValueError("need synth_batch >= 1 and epochs_per_round >= 1")


@functools.partial(jax.jit, static_argnames=("net", "n", "steps", "step_size", "alpha"))
def _synthesize(net, variables, key, *, n, steps, step_size, alpha):
    """n images (float32 in [0, 1]) that make the student's last exit output Dirichlet targets."""
    k_init, k_target = jax.random.split(key)
    z = jax.random.normal(k_init, (n, *net.input_shape), jnp.float32)  # pixel logits
    concentration = jnp.full((net.num_classes,), alpha, jnp.float32)
    target = jax.random.dirichlet(k_target, concentration, (n,)).astype(jnp.float32)
    tx = optax.adam(step_size)

    def objective(z):
        logits = net.apply(variables, jax.nn.sigmoid(z), train=False)[-1]
        return jnp.mean(kl_divergence(target, logits))  # KL(target ‖ student), mean over images

    def step(carry, _):
        z, opt_state = carry
        grads = jax.grad(objective)(z)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
            updates, opt_state = tx.update(grads, opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), None

    (z, _), _ = jax.lax.scan(step, (z, tx.init(z)), None, length=steps)
    return jax.nn.sigmoid(z)


def es_attack(
    victim: oracle.BlackBox,
    num_queries: int,
    config: StealConfig,
    esa: ESAConfig = ESAConfig(),
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> StealResult:
    """ES Attack (OPT-SYN): synthesize, query, train on every answer so far; `rounds` times.

    An exhausted budget ends the rounds early; the student then trains on what was answered."""
    config = _baseline_config(config)
    if num_queries < esa.rounds:
        raise ValueError(f"{num_queries} queries cannot be split over {esa.rounds} rounds")
    student, variables = build_student(config, victim.num_classes, config.num_exits, victim.input_shape)
    epochs = esa.epochs_per_round or max(1, config.epochs // esa.rounds)
    key = jax.random.fold_in(jax.random.key(config.seed), 0xE5A)
    per_round = np.diff(np.linspace(0, num_queries, esa.rounds + 1).astype(int))
    images, outputs, history = [], [], []
    exhausted = False
    rounds = tqdm(range(esa.rounds), desc="ES Attack rounds", disable=not progress)
    for r in rounds:
        key, sub = jax.random.split(key)
        if r == 0:  # no student trained on the victim yet: random images
            batch = data.noise_images(sub, int(per_round[r]), victim.input_shape, kind="uniform")
        else:
            batch = _synthesize_uint8(student, variables, sub, int(per_round[r]), esa)
        try:
            answers = victim.query(batch)
        except oracle.BudgetExhausted as stop:
            answers, exhausted = stop.answered, True
            warnings.warn(f"{stop} ES Attack stops after round {r}.", stacklevel=2)
        images.append(batch[: len(answers)])
        outputs.append(answers.outputs)
        all_images, all_outputs = np.concatenate(images), np.concatenate(outputs)
        if len(all_images) < 2:
            raise ValueError(f"only {len(all_images)} queries were answered: not enough to train a student")
        round_dir = None if workdir is None else Path(workdir) / f"round_{r:02d}"
        variables, round_history = train_student(
            student, all_images, all_outputs, None, config, variables=variables, epochs=epochs,
            workdir=round_dir, progress=False, queries=len(all_images),
        )  # fmt: skip
        history += [dict(record, round=r) for record in round_history]
        rounds.set_postfix(queries=len(all_images))
        if exhausted:
            break
    thresholds, how = choose_thresholds(student, variables, all_images, all_outputs, None, config)
    return StealResult(
        net=student,
        variables=variables,
        thresholds=thresholds,
        thresholds_how=how,
        estimated_exits=None,
        boundaries=[],
        runtimes=np.zeros(0),
        answered=len(all_images),
        queries_used=victim.used,
        budget_exhausted=exhausted,
        timing="none",
        passes=1,
        history=history,
        config=config,
        method="esa",
        query_images=all_images,
    )


def _synthesize_uint8(student, variables, key, n: int, esa: ESAConfig) -> np.ndarray:
    parts = []
    for start in range(0, n, esa.synth_batch):
        size = min(esa.synth_batch, n - start)
        key, sub = jax.random.split(key)
        x = _synthesize(
            student, variables, sub, n=size, steps=esa.steps, step_size=esa.step_size, alpha=esa.alpha
        )
        if not bool(jnp.all(jnp.isfinite(x))):
            raise FloatingPointError("ES Attack's synthesis produced NaN images; lower step_size")
        parts.append(np.asarray(jnp.round(x * 255.0)).astype(np.uint8))
    return np.concatenate(parts)
