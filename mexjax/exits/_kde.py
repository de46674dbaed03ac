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
     the lower of the two neighbouring peaks), the peaks lie `separation` spreads apart and both sides
     hold enough queries (`min_count`), merging the weakest boundary first;
  4. merges humps that do not stand out of the local background of scattered slow outliers (a Poisson
     test of each hump's core), and humps much wider than the typical spread, into the exit on their
     left, in one pass each;
  5. only when a hump left is much wider (`overlap` x) than the spread a finer split sees, i.e. noise
     made neighbouring exits overlap with no density minimum between them (about 3 spreads apart),
     re-reads the humps as a mixture of exits of one noise shape (`_mixture`: a BIC search, ~1 s).
Exits are numbered 0, 1, ... in order of time; an exit no query reaches cannot be seen.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from mexjax.exits import _mixture
from mexjax.exits._density import kde, rule_of_thumb


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
    # the exact sum: the binned KDE's float32 FFT round-off (~1e-7 of the peak) adds spurious local
    # minima where the density is nearly 0, and every minimum is a candidate boundary
    lo, hi = x.min() - 3 * h, x.max() + 3 * h
    grid = np.linspace(lo, hi, points)
    return grid, np.asarray(kde(x, grid, h), np.float64)


def _boundaries(x, grid, density, dip: float, min_count: int, min_separation: float = 0.0) -> list[float]:
    """Minima of `density` that separate real humps (see module docstring), as x positions.

    A minimum stays a boundary only if both sides hold >= min_count points, the two neighbouring peaks
    lie at least `min_separation` apart, and its density is below `dip` x the lower peak. The worst
    offender is merged first (too few points, then the closest peaks, then the shallowest dip)."""
    d = density
    interior = np.arange(1, len(d) - 1)
    cuts = list(interior[(d[interior] < d[interior - 1]) & (d[interior] <= d[interior + 1])])
    while cuts:
        edges = [0, *cuts, len(d) - 1]
        peaks = [int(a + np.argmax(d[a : b + 1])) for a, b in itertools.pairwise(edges)]
        counts = np.histogram(x, bins=[-np.inf, *grid[cuts], np.inf])[0]
        scores = []
        for j, c in enumerate(cuts):
            ratio = d[c] / max(min(d[peaks[j]], d[peaks[j + 1]]), 1e-300)
            small = min(counts[j], counts[j + 1]) < min_count
            close = grid[peaks[j + 1]] - grid[peaks[j]] < min_separation
            scores.append((small, close, -(grid[peaks[j + 1]] - grid[peaks[j]]) if close else 0.0, ratio))
        worst = max(range(len(cuts)), key=lambda j: scores[j])
        small, close, _, ratio = scores[worst]
        if not small and not close and ratio < dip:
            break
        if small:  # merge the too-small hump with the neighbour across its shallower dip
            side = worst if counts[worst] < counts[worst + 1] else worst + 1  # index of the small hump
            options = [k for k in (side - 1, side) if 0 <= k < len(cuts)]
            cuts.pop(max(options, key=lambda k: d[cuts[k]]))
        else:
            cuts.pop(worst)
    return [float(grid[c]) for c in cuts]


def estimate_exits(
    runtimes,
    *,
    bandwidth: float | str | None = None,
    log: bool = True,
    dip: float = 0.7,
    min_count: int | None = None,
    smoothing: float = 0.5,
    separation: float = 2.5,
    significance: float = 4.0,
    max_spread: float = 2.5,
    overlap: float | None = 1.5,
    return_boundaries: bool = False,
):
    """Estimate each query's exit from its response time.

    Args:
      runtimes: f32[N] positive times (seconds or any unit).
      bandwidth: None = `smoothing` x the robust spread inside humps (module docstring); or a float
        (in log units when log=True) / "scott" / "silverman" for one KDE bandwidth from the whole sample.
      log: analyse log-times (multiplicative noise).
      dip: a boundary must have density below dip x the lower neighbouring peak.
      min_count: queries a hump needs to count as an exit (default max(5, N / 400): exits reached
        by 1 % of the queries stand 4x above it).
      smoothing: the bandwidth in units of the typical spread inside humps.
      separation: neighbouring humps closer than this many typical spreads are one exit.
      significance: a hump must stand this many Poisson deviations above the local background of
        scattered slow outliers, else it merges into the hump on its left.
      max_spread: a hump wider than max_spread x the typical spread is scattered slow outliers, not
        an exit: it merges into the hump on its left.
      overlap: a hump wider than overlap x the spread of a finer split holds overlapping exits: the
        mixture step (5 in the module docstring) re-reads them; None skips that step.

    Returns (exit_ids int32[N] 0-based, num_exits) [+ boundaries in runtime units].
    A single hump is reported with a warning and num_exits = 1.
    """
    t = check_runtimes(runtimes)
    x = np.log(t) if log else t
    n = x.size
    min_count = max(5, n // 400) if min_count is None else int(min_count)
    if bandwidth is None:
        # a fine first split (a quarter of Silverman's bandwidth) keeps humps apart; the dip rule keeps
        # dense humps whole, so the size-weighted spread inside them is the timing noise's
        spread = _within_hump_spread(x, 0.25 * rule_of_thumb(x, "silverman"), 0.5, min_count)
        h = smoothing * spread if spread > 0 else rule_of_thumb(x, "silverman")
    else:
        h = rule_of_thumb(x, bandwidth)
        spread = 0.0
    grid, density = _grid_density(x, h)
    if spread > 0:
        cuts = _boundaries(x, grid, density, dip, min_count, separation * spread)
        cuts = _drop_insignificant(x, cuts, spread, min_count, significance)
        cuts = _merge_scattered(x, cuts, spread, max_spread)
        if overlap is not None:
            cuts = _resolve_overlaps(x, cuts, min_count, overlap)
    else:
        cuts = _boundaries(x, grid, density, min(dip, 0.5), min_count)
    exit_ids = np.searchsorted(np.asarray(cuts), x, side="right").astype(np.int32)
    if not cuts:
        warnings.warn(
            "the runtimes form a single hump: no exit boundary is visible (a victim that always exits at "
            "the same place, answers in constant time, or timings too noisy; try more timing passes)",
            stacklevel=2,
        )
    bounds = [float(np.exp(c)) if log else c for c in cuts]
    return (exit_ids, len(cuts) + 1, bounds) if return_boundaries else (exit_ids, len(cuts) + 1)


def _resolve_overlaps(x: np.ndarray, cuts: list[float], min_count: int, overlap: float) -> list[float]:
    """When timing noise makes neighbouring exits overlap (about 3 spreads apart), the density has no
    minimum between them and the rules above merge them: a hump then is much wider than the spread
    that a finer split sees. Only then the humps are re-read as a mixture of exits of one noise shape
    (`_mixture.refine`, slower), starting from the humps found here."""
    fine = _within_hump_spread(x, 0.25 * rule_of_thumb(x, "silverman"), 0.7, min_count)
    labels = np.searchsorted(np.asarray(cuts), x, side="right")
    widths = [_robust_sd(x[labels == k]) for k in range(len(cuts) + 1)]
    if not fine > 0 or max(widths) <= overlap * fine:
        return cuts
    centers = [float(np.median(x[labels == k])) for k in range(len(cuts) + 1)]
    return _mixture.refine(x, centers, fine, min_count)[0]


def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _within_hump_spread(x: np.ndarray, h: float, dip: float, min_count: int) -> float:
    """Typical spread (robust sd) of the points inside humps, from a first fine split."""
    grid, density = _grid_density(x, h)
    cuts = _boundaries(x, grid, density, dip, min_count)
    labels = np.searchsorted(np.asarray(cuts), x, side="right")
    deviations = np.concatenate(
        [np.abs(x[labels == k] - np.median(x[labels == k])) for k in range(len(cuts) + 1)]
    )
    return 1.4826 * float(np.median(deviations))


def _drop_insignificant(
    x: np.ndarray, cuts: list[float], spread: float, min_count: int, z: float
) -> list[float]:
    """Merge humps that do not stand out of the local background of scattered slow outliers.

    The core of a hump = its points from 3 spreads below to 4 spreads above its median (timing noise
    only ever slows answers, so tails reach right). Points outside every core are background; around
    each hump (+-10 spreads) their density gives the count expected by chance in a core-sized window.
    A hump is real if its core exceeds that by z Poisson deviations and holds min_count points; weak
    humps merge into their left neighbour (outliers are slowed answers of earlier exits) in one pass,
    so merges cannot cascade. The largest hump always stays."""
    if not cuts:
        return cuts
    below, above, window = 3 * spread, 4 * spread, 10 * spread
    labels = np.searchsorted(np.asarray(cuts), x, side="right")
    in_core = np.zeros(x.size, bool)
    centers = []
    for k in range(len(cuts) + 1):
        members = labels == k
        center = float(np.median(x[members])) if members.any() else 0.0
        centers.append(center)
        in_core |= members & (x >= center - below) & (x <= center + above)
    loose = x[~in_core]
    cores = np.bincount(labels[in_core], minlength=len(cuts) + 1)
    weak = set()
    for k, center in enumerate(centers):
        nearby = int(np.sum(np.abs(loose - center) <= window))
        expected = nearby * (below + above) / (2 * window)
        if cores[k] < max(min_count, expected + z * np.sqrt(expected)) and k != int(np.argmax(cores)):
            weak.add(k)
    drop = {max(k - 1, 0) for k in weak}
    return [c for i, c in enumerate(cuts) if i not in drop]


def _merge_scattered(x: np.ndarray, cuts: list[float], spread: float, max_spread: float) -> list[float]:
    """Merge every scattered hump (robust width > max_spread x spread: slow outliers, not an exit)
    into the hump on its left, in one pass so that merges cannot cascade."""
    if not cuts:
        return cuts
    labels = np.searchsorted(np.asarray(cuts), x, side="right")
    widths = [_robust_sd(x[labels == k]) for k in range(len(cuts) + 1)]
    drop = {max(k - 1, 0) for k, w in enumerate(widths) if w > max_spread * spread}
    return [c for i, c in enumerate(cuts) if i not in drop]
