"""Adaptive re-timing: spend timing passes where the exit is still in doubt.

Taking the fastest of R passes for every query spends most repeats on queries whose exit was clear
after one pass. Here the attacker times every query once, reads the exits (`exits.analyse_timing`),
and re-times only the queries whose exit is ambiguous (the fitted model's posterior of their exit
below `confident`: a time in an exit's slow tail, between two exits or in a gap), the least confident
first, an eighth of the extra passes per round, reading the exits again after each round, until
every query is confident or the extra passes are spent. Every repeat
is a query and counts against the oracle's budget, as with uniform passes.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from mexjax import exits, oracle


@dataclasses.dataclass(frozen=True)
class RetimedAnswers:
    """The oracle's answers with adaptively re-timed runtimes."""

    outputs: np.ndarray
    runtimes: np.ndarray  # f64[N]: fastest time of each query over the passes it got
    passes: np.ndarray  # int32[N]: timing passes spent on each query
    rounds: int
    timing: str
    output: str
    exhausted: bool  # the oracle's budget ran out during re-timing (the answers so far are kept)

    def __len__(self) -> int:
        return len(self.runtimes)


def adaptive_timing(
    victim,
    images: np.ndarray,
    *,
    total_passes: float = 3.0,
    confident: float = 0.95,
    max_rounds: int = 40,
    min_size: int = 3,
) -> RetimedAnswers:
    """Time every image once, then re-time the ambiguous ones (module docstring).

    total_passes: the timing budget as passes per image on average (the same number of queries as
    uniform fastest-of-`total_passes` timing); the first pass is always spent on every image.
    Raises BudgetExhausted (with what it answered) only if the first pass itself cannot be paid."""
    if total_passes < 1:
        raise ValueError(f"total_passes must be >= 1; got {total_passes}")
    if not 0 < confident <= 1:
        raise ValueError(f"confident must be in (0, 1]; got {confident}")
    first = victim.query(images, passes=1)
    n = len(first)
    runtimes = np.asarray(first.runtimes, np.float64).copy()
    passes = np.ones(n, np.int32)
    extra = round((total_passes - 1) * n)
    per_round = max(1, -(-extra // 8))  # at least 8 rounds: the exits are read again between them
    rounds, exhausted = 0, False
    while extra > 0 and rounds < max_rounds and n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a single hump is an answer here, not a problem
            fit = exits.analyse_timing(runtimes, min_size=min_size, drift=False)
        doubtful = np.flatnonzero(fit.confidence < confident)
        if doubtful.size == 0:
            break
        # the least confident first, those timed least often first among equals
        order = np.lexsort((passes[doubtful], fit.confidence[doubtful]))
        pick = np.sort(doubtful[order[: min(extra, per_round)]])
        try:
            again = victim.query(images[pick], passes=1)
        except oracle.BudgetExhausted as stop:
            again, exhausted = stop.answered, True
            pick = pick[: len(again)]
        runtimes[pick] = np.minimum(runtimes[pick], again.runtimes)
        passes[pick] += 1
        extra -= len(pick)
        rounds += 1
        if exhausted:
            break
    return RetimedAnswers(first.outputs, runtimes, passes, rounds, first.timing, first.output, exhausted)
