"""Reading exits from response times: a jax.numpy Gaussian KDE and a robust boundary finder.

A multi-exit victim answers faster when a sample leaves early, so the response times of the queries
form one hump per exit. `estimate_exits` finds the humps. A textbook rule (the local minima of one
Gaussian KDE with Scott's bandwidth) fails on real timings in two ways: a bandwidth fitted to the
whole multi-modal sample is too wide, so sparsely reached exits merge into their neighbours; and slow
outliers (timing noise) form small spurious humps. The estimator here therefore
  1. works on log-times (timing noise is multiplicative: every hump gets a similar width),
  2. chooses the bandwidth from the spread *within* humps (Silverman's rule on the pooled robust
     within-hump scale, refined once after a first split), not from the whole sample,
  3. keeps a density minimum as a boundary only if it is a real dip (its density is below `dip` times
     the lower of the two neighbouring peaks) and both sides hold enough queries (`min_count`), merging
     the weakest boundary first until every remaining one qualifies.
Exits are numbered 0, 1, ... in order of time; an exit no query reaches cannot be seen.
"""

from __future__ import annotations

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@jax.jit
def _kde(samples, points, bandwidth):
    z = (points[:, None] - samples[None, :]) / bandwidth
    return jnp.sum(jnp.exp(-0.5 * z * z), axis=1) / (samples.shape[0] * bandwidth * _SQRT_2PI)


def kde(samples, points, bandwidth: float | str = "scott", *, chunk: int = 4096) -> jax.Array:
    """Gaussian kernel density of `samples` f32[n] evaluated at `points` f32[m] -> f32[m].

    bandwidth: a positive float, or "scott" / "silverman" (rules of thumb on the samples' spread).
    Points are evaluated in chunks so memory stays O(chunk · n).
    """
    samples = jnp.asarray(samples, jnp.float32).reshape(-1)
    points = jnp.asarray(points, jnp.float32).reshape(-1)
    if samples.shape[0] == 0:
        raise ValueError("kde needs at least one sample")
    h = jnp.asarray(rule_of_thumb(np.asarray(samples), bandwidth), jnp.float32)
    m = points.shape[0]
    padded = -(-m // chunk) * chunk if m > chunk else m
    pts = jnp.pad(points, (0, padded - m)) if padded != m else points
    out = [_kde(samples, pts[i : i + chunk], h) for i in range(0, padded, chunk)] if m else []
    return jnp.concatenate(out)[:m] if out else jnp.zeros((0,), jnp.float32)


def rule_of_thumb(samples: np.ndarray, bandwidth: float | str) -> float:
    """A bandwidth: the float itself, or Scott's / Silverman's rule on the samples."""
    if not isinstance(bandwidth, str):
        h = float(bandwidth)
        if not h > 0 or not math.isfinite(h):
            raise ValueError(f"bandwidth must be a positive number; got {bandwidth}")
        return h
    n = samples.size
    std = float(np.std(samples))
    iqr = float(np.subtract(*np.percentile(samples, [75, 25])))
    if bandwidth == "scott":
        h = 1.06 * std * n ** (-0.2)
    elif bandwidth == "silverman":
        spread = min(std, iqr / 1.349) if iqr > 0 else std
        h = 0.9 * spread * n ** (-0.2)
    else:
        raise ValueError(f"bandwidth must be a number, 'scott' or 'silverman'; got {bandwidth!r}")
    return h if h > 0 else 1e-6 * max(abs(float(np.mean(samples))), 1.0)


def check_runtimes(runtimes) -> np.ndarray:
    """Validate measured times (finite, positive, 1-D); returns float64 numpy."""
    arr = np.asarray(runtimes, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"runtimes must be a 1-D array, one time per query; got shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"need at least 2 runtimes to find exits; got {arr.size}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} runtimes are NaN, infinite, zero or negative (first at index "
            f"{int(np.argmax(bad))}): time queries with a monotonic clock and drop failed ones"
        )
    return arr


def _grid_density(x: np.ndarray, h: float, points: int = 2048):
    lo, hi = x.min() - 3 * h, x.max() + 3 * h
    grid = np.linspace(lo, hi, points)
    return grid, np.asarray(kde(x, grid, h), np.float64)


def _boundaries(x, grid, density, dip: float, min_count: int) -> list[float]:
    """Minima of `density` that separate real humps (see module docstring), as x positions."""
    d = density
    interior = np.arange(1, len(d) - 1)
    minima = interior[(d[interior] < d[interior - 1]) & (d[interior] <= d[interior + 1])]
    cuts = list(minima)
    while cuts:
        edges = [0, *cuts, len(d) - 1]
        peaks = [int(a + np.argmax(d[a : b + 1])) for a, b in itertools.pairwise(edges)]
        counts = np.histogram(x, bins=[-np.inf, *grid[cuts], np.inf])[0]
        # badness of each cut: dip ratio, and whether a side holds too few queries
        scores = []
        for j, c in enumerate(cuts):
            ratio = d[c] / max(min(d[peaks[j]], d[peaks[j + 1]]), 1e-300)
            small = min(counts[j], counts[j + 1]) < min_count
            scores.append((small, ratio))
        worst = max(range(len(cuts)), key=lambda j: (scores[j][0], scores[j][1]))
        small, ratio = scores[worst]
        if not small and ratio < dip:
            break
        if small:  # merge the too-small hump with the neighbour across its shallower dip
            j = worst
            side = j if counts[j] < counts[j + 1] else j + 1  # index of the small hump
            left_cut = side - 1 if side - 1 >= 0 else None
            right_cut = side if side < len(cuts) else None
            options = [k for k in (left_cut, right_cut) if k is not None]
            drop = max(options, key=lambda k: d[cuts[k]])
            cuts.pop(drop)
        else:
            cuts.pop(worst)
    return [float(grid[c]) for c in cuts]


def estimate_exits(
    runtimes,
    *,
    bandwidth: float | str | None = None,
    log: bool = True,
    dip: float = 0.5,
    min_count: int | None = None,
    return_boundaries: bool = False,
):
    """Estimate each query's exit from its response time.

    Args:
      runtimes: f32[N] positive times (seconds or any unit).
      bandwidth: None = the within-hump rule (module docstring); or a float (in log units when
        log=True) / "scott" / "silverman" for a single KDE on the whole sample.
      log: analyse log-times (multiplicative noise).
      dip: a boundary must have density below dip x the lower neighbouring peak.
      min_count: queries a hump needs to count as an exit (default max(3, N / 1000)).

    Returns (exit_ids int32[N] 0-based, num_exits) [+ boundaries in runtime units].
    A single hump is reported with a warning and num_exits = 1.
    """
    t = check_runtimes(runtimes)
    x = np.log(t) if log else t
    n = x.size
    min_count = max(3, n // 1000) if min_count is None else int(min_count)
    h = _within_hump_bandwidth(x, dip, min_count) if bandwidth is None else rule_of_thumb(x, bandwidth)
    grid, density = _grid_density(x, h)
    cuts = _boundaries(x, grid, density, dip, min_count)
    exit_ids = np.searchsorted(np.asarray(cuts), x, side="right").astype(np.int32)
    if not cuts:
        warnings.warn(
            "the runtimes form a single hump: no exit boundary is visible (a victim that always exits at "
            "the same place, answers in constant time, or timings too noisy; try more timing passes)",
            stacklevel=2,
        )
    bounds = [float(np.exp(c)) if log else c for c in cuts]
    return (exit_ids, len(cuts) + 1, bounds) if return_boundaries else (exit_ids, len(cuts) + 1)


def _within_hump_bandwidth(x: np.ndarray, dip: float, min_count: int) -> float:
    """Silverman's rule on the pooled robust spread inside humps, found by a first coarse split."""
    h = rule_of_thumb(x, "silverman")
    for _ in range(2):
        grid, density = _grid_density(x, h)
        cuts = _boundaries(x, grid, density, dip, min_count)
        labels = np.searchsorted(np.asarray(cuts), x, side="right")
        deviations = np.concatenate(
            [np.abs(x[labels == k] - np.median(x[labels == k])) for k in range(len(cuts) + 1)]
        )
        spread = 1.4826 * float(np.median(deviations))  # MAD -> std of a normal
        if spread <= 0:
            break
        new_h = 0.9 * spread * x.size ** (-0.2)
        if abs(new_h - h) < 0.05 * h:
            h = new_h
            break
        h = new_h
    return h
