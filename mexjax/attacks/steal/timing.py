"""Stealing a multi-exit network through its timing: utility *and* output strategy (seed 000, METHODS §3).

The attacker queries the black-box victim (`oracle.BlackBox`: in process or over HTTP), reads each query's
exit from the answer times (`exits.estimate_exits`), trains a multi-exit student with as many exits on the
performance loss (KL to the victim's answers at every exit) plus the strategy loss (confident at the
estimated exit, not before), then searches thresholds that make the student exit where the victim did
(`student_training`). With `use_timing=False` the same code is the baseline: distillation at every exit, no
timing, and one global threshold chosen on the attacker's own queries.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mexjax import exits, metrics, nets, oracle
from mexjax.attacks.steal.retime import adaptive_timing
from mexjax.attacks.steal.student_training import (
    StealConfig,
    StealResult,
    build_student,
    choose_thresholds,
    train_student,
)


def timing_attack(
    victim: oracle.BlackBox,
    queries: np.ndarray,
    config: StealConfig,
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> StealResult:
    """Run the attack with `queries` (uint8 images of the victim's input shape)."""
    passes = config.passes if config.use_timing else 1
    n_timed = len(queries)
    if config.use_timing and config.timed_share < 1:
        n_timed = min(len(queries), max(2, int(np.ceil(config.timed_share * len(queries)))))
    exhausted = False
    try:
        if config.use_timing and config.retime == "adaptive":
            answers = adaptive_timing(victim, queries[:n_timed], total_passes=config.passes)
            exhausted = answers.exhausted
        else:
            answers = victim.query(queries[:n_timed], passes=passes)
    except oracle.BudgetExhausted as stop:
        answers, exhausted = stop.answered, True
        warnings.warn(f"{stop} Continuing with the {len(answers)} answered queries.", stacklevel=2)
    n = len(answers)  # timed (all answered queries without timing)
    outputs = answers.outputs
    if n == n_timed < len(queries) and not exhausted:  # the untimed rest: answers only
        try:
            rest = victim.query(queries[n_timed:], passes=1, timed=False)
        except oracle.BudgetExhausted as stop:
            rest, exhausted = stop.answered, True
            warnings.warn(f"{stop} Continuing with the {n + len(rest)} answered queries.", stacklevel=2)
        outputs = np.concatenate([outputs, rest.outputs])
    answered = len(outputs)
    if n < 2:
        raise ValueError(f"only {n} queries were answered: not enough to train a student")
    images = np.asarray(queries[:answered])
    if images.dtype != np.uint8:
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)

    est, boundaries = None, []
    num_exits = config.num_exits
    if config.use_timing:
        every = getattr(answers, "pass_runtimes", None)  # every pass, when the oracle kept them
        timed = every if every is not None and every.shape[0] > 1 else answers.runtimes
        order = getattr(answers, "pass_order", None) if timed is every else None
        est, k, boundaries = exits.estimate_exits(timed, order=order, return_boundaries=True)
        if k < 2:
            raise ValueError(
                "the timing shows a single exit: the victim seems not to exit early on these queries "
                "(or answers in constant time); set num_exits and use_timing=False for a plain copy"
            )
        if n < k:
            raise ValueError(f"{n} queries cannot train a student with {k} exits")
        num_exits = num_exits or min(k, nets.MAX_EXITS)
        est = np.minimum(est, num_exits - 1).astype(np.int32)
    student, initial = build_student(config, victim.num_classes, num_exits, victim.input_shape)
    targets = est  # the untimed rest has no exit to copy: -1 switches the strategy loss off for it
    if est is not None and answered > n:
        targets = np.concatenate([est, np.full(answered - n, -1, np.int32)])
    variables, history = train_student(
        student,
        images,
        outputs,
        targets,
        config,
        variables=initial,
        workdir=workdir,
        progress=progress,
        queries=answered,
    )
    thresholds, how = choose_thresholds(student, variables, images[:n], outputs[:n], est, config)
    return StealResult(
        net=student,
        variables=variables,
        thresholds=thresholds,
        thresholds_how=how,
        estimated_exits=est,
        boundaries=boundaries,
        runtimes=answers.runtimes,
        answered=answered,
        queries_used=victim.used,
        budget_exhausted=exhausted,
        timing=answers.timing,
        passes=config.passes if config.retime == "adaptive" else answers.passes,
        history=history,
        config=config,
        method="ours" if config.use_timing else "knockoff",
        query_images=images,
    )


def score_exit_reading(victim: oracle.Oracle, result: StealResult, queries) -> dict:
    """Evaluation code: how well the timing analysis predicted the answered queries' true exits."""
    if result.estimated_exits is None:
        raise ValueError("this attack did not use timing")
    true = oracle.true_exits(victim, np.asarray(queries[: len(result.estimated_exits)]))
    return metrics.exit_prediction(result.estimated_exits, true)
