"""Slow drift of a machine's speed within one timing run, and its removal.

A busy period (another process, a frequency change) slows every answer measured during it by about
the same factor, whatever its exit: a shift of log-time that varies slowly along the measurement
order. Left in, it widens every exit and can split one exit into two humps.

With several passes per query the drift is read without knowing any exit: a query's exit is the same
in every pass, so each pass's log-time minus the query's median over its passes holds only noise and
the drift of the moment it was measured; a running median of those residuals along the measurement
order is the drift. What those residuals cannot see is drift that every pass shares (a machine
slowing steadily: query i is always measured at the same point of each pass), and with one pass
there are no residuals at all: stretches of the queries are then registered to the run's own
density (`remove_single`).
A drift smaller than half the noise spread everywhere is left alone (it cannot split an exit).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _window(count: int) -> int:
    return int(max(51, (count // 60) | 1))


def running_drift(residuals: np.ndarray) -> np.ndarray:
    """The drift along the measurement order: a running median of residual log-times, centred on the
    run's median (an overall offset is not drift)."""
    d = ndimage.median_filter(residuals, size=_window(residuals.size), mode="nearest")
    return d - np.median(d)


def remove(every_log: np.ndarray, spread: float, summary=np.min, order: np.ndarray | None = None):
    """Drift-free log-time per query (`summary` over its drift-free passes: the fastest by default;
    None: every drift-free pass f64[R, N])
    from every pass's log-times f64[R, N] (R >= 2; pass p measured before pass p + 1, within a pass
    in the order `order[p]` (query indices, `oracle.measurement_order`) or, without one, in query
    order), or None when the drift stays below half the noise spread."""
    passes, n = every_log.shape
    if order is None:
        order = np.broadcast_to(np.arange(n), (passes, n))
    rows = np.arange(passes)[:, None]
    residuals = every_log - np.median(every_log, axis=0)[None, :]
    d = running_drift(residuals[rows, order].reshape(-1)).reshape(passes, n)  # in measurement order
    if np.max(np.abs(d)) < 0.5 * spread:
        return None
    drift = np.empty_like(d)
    drift[rows, order] = d  # back to query order
    return every_log - drift if summary is None else summary(every_log - drift, axis=0)


def remove_single(x: np.ndarray, spread: float, max_shift: float = 0.4, rounds: int = 2) -> np.ndarray | None:
    """One pass per query: drift-free log-times, or None when the drift stays below half the noise
    spread. Each stretch of consecutive measurements (about N / 20 of them) is shifted to where its
    times best match the density of the whole run (a cross-correlation of histograms binned at a
    quarter spread, shifts within +-max_shift log units); the shifts are smoothed along the order.
    A slow period moves every exit of its stretch alike, so the stretch matches the run's humps best
    when moved back; twice, since the run's own density holds the slowed copy at first."""
    n = x.size
    size = max(100, n // 20)
    if n < 4 * size:
        return None
    step = 0.25 * spread
    edges = np.arange(x.min() - max_shift - step, x.max() + max_shift + 2 * step, step)
    lags = round(max_shift / step)
    kernel = np.exp(-0.5 * (np.arange(-8, 9) / 4.0) ** 2)  # one spread of smoothing
    starts = np.arange(0, n - size + 1, size // 2)
    centres = starts + size / 2
    shift = np.zeros(n)
    for _ in range(rounds):
        y = x - shift
        whole = np.convolve(np.histogram(y, edges)[0].astype(float), kernel, mode="same")
        found = []
        for a in starts:
            part = np.convolve(np.histogram(x[a : a + size], edges)[0].astype(float), kernel, mode="same")
            scores = [np.dot(np.roll(part, -lag), whole) for lag in range(-lags, lags + 1)]
            best = int(np.argmax(scores)) - lags  # part moved down by `best` bins matches the run
            found.append(best * step)
        found = ndimage.median_filter(np.asarray(found), size=3, mode="nearest")
        found -= np.median(found)
        # each measurement takes the shift of the stretch before or after it, whichever puts it
        # where the run's density is higher (a busy period starts and ends abruptly)
        after = np.clip(np.searchsorted(centres, np.arange(n)), 0, len(centres) - 1)
        before = np.clip(after - 1, 0, len(centres) - 1)
        options = np.stack([found[before], found[after]])
        density = np.interp(x[None, :] - options, 0.5 * (edges[1:] + edges[:-1]), whole)
        shift = options[np.argmax(density, axis=0), np.arange(n)]
    if np.max(np.abs(shift)) < 0.5 * spread:
        return None
    return x - shift
