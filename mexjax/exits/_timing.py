"""Reading exits from response times with one model: a mixture of per-exit time distributions.

A multi-exit victim answers faster when a sample leaves early. With R >= 3 timing passes per query
([R, N]) and `every_pass=True`, `estimate_exits` reads the exits from every pass of every query
(`_passes`, opt-in: it splits an exit whose queries form timing groups every pass repeats, and did so
once in a live 3-exit test): a query's exit
is the same in each of its passes, so its R times are draws of its exit's time plus one noise that
every exit shares, fitted together by EM with a mixture of exits over the queries; the number of exits
is the one with the lowest integrated completed likelihood. That uses what the fastest pass throws
away (the timing corpus: experiments/results/timing_corpus.md). By default, and with one or two
passes, it reads one time per query and fits the mixture below.

On log-times (timing noise is mostly
multiplicative) every exit is one component of the same shape, the shape that the fastest of R noisy
passes produces: a Gaussian core (the jitter left after taking the fastest pass) with a slowed share
rho delayed by an exponential of mean tau (passes that were all disturbed), rho and tau shared by the
exits, plus a uniform background for scattered outliers (`_mixture`). `estimate_exits`
  1. reads one log-time per query: with one pass its time; with R >= 3 passes ([R, N]) the fastest,
     the median, or the median once the drift along the measurement order is removed (`_drift`),
     whichever leaves the exits' humps tightest (`summarise_passes`);
  2. removes a slow drift of the whole machine within the run from stretches of the queries
     (`_drift.remove_single`): a busy period shifts every exit's time alike, which would otherwise
     split one exit into two;
  3. starts from every hump of a fine density estimate (over-complete: noise makes spurious humps),
     fits the mixture, and removes components one by one (each time the one whose removal costs the
     least likelihood), refitting each time; the number of exits is the one with the lowest Bayesian
     information criterion (BIC) among models whose every exit holds >= `min_size` queries and is
     the most likely exit somewhere; a few split / add / remove moves then polish it; then a model
     of that search with fewer exits replaces it where its integrated completed likelihood is
     lower (ICL: BIC plus twice the entropy of the queries' assignment to exits): BIC splits one
     exit whose times are not bell-shaped into two that overlap, and overlap is what the ICL
     charges for;
  4. a scan test for small exits: a tight cluster of a few queries where the fitted model expects
     almost none (a Poisson tail probability below `alpha`, corrected for the number of windows
     tried) is an exit of its own, however few queries reach it; BIC alone would absorb 3 queries of
     thousands into a neighbour's tail or the background at little cost in likelihood;
  5. with R >= 2 passes, a replication test of every boundary (`keep_replicated`): a query's exit is
     fixed, so the queries that one half of the passes puts on the fast side of a boundary must also
     be the faster ones in the other half. A split of one exit's times, however bimodal the noise
     made them (a loaded machine does), does not replicate: which queries land low is chance in each
     half. Neighbours whose split does not replicate are merged, the least convincing first.
Queries are assigned to the exit whose weighted density is highest at their time. Exits are numbered
0, 1, ... in order of time; an exit that no query reaches cannot be seen.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings

import numpy as np
from scipy import stats

from mexjax.exits import _drift, _em, _kde, _passes

MAX_START = _em.MAX_COMPONENTS
CRITERIA = ("icl", "bic")


def fastest(runtimes) -> np.ndarray:
    """Per-query fastest time of f[N] or f[R, N] (every pass), validated: f64[N]."""
    arr = np.asarray(runtimes, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[0] < 1:
            raise ValueError("runtimes [R, N] need at least one pass")
        _kde.check_runtimes(arr.reshape(-1))
        return arr.min(axis=0)
    if arr.ndim != 1:
        raise ValueError(
            f"runtimes must be f[N] (one time per query) or f[R, N] (every pass); got shape {arr.shape}"
        )
    return _kde.check_runtimes(arr)


@dataclasses.dataclass(frozen=True)
class TimingFit:
    """What `analyse_timing` read from the runtimes."""

    exit_ids: np.ndarray  # int32[N], 0-based, in order of time
    num_exits: int
    boundaries: list[float]  # seconds (on the drift-free times), num_exits - 1 of them
    confidence: np.ndarray  # f32[N]: the fitted model's posterior that the time is an undisturbed
    # (core) time of one exit; a time in an exit's slow tail, between exits or in the background of
    # outliers is not confident: another pass may move it
    log_times: np.ndarray  # f64[N]: the drift-free log-times the exits were read from


def estimate_exits(
    runtimes,
    *,
    min_size: int = 2,
    drift: bool = True,
    alpha: float = 1e-3,
    criterion: str = "icl",
    replication_level: float = 1e-3,
    order=None,
    every_pass: bool = False,
    return_boundaries: bool = False,
):
    """Estimate each query's exit from its response times (see the module docstring).

    Args:
      runtimes: f[N] positive times (the fastest pass of each query), or f[R, N]: every pass, in the
        order they were measured (pass 0 over all N queries, then pass 1, ...), as
        `oracle.QueryResult.pass_runtimes` holds them.
      min_size: queries an exit needs to be seen.
      drift: remove a slow drift of the machine's speed along the measurement order first.
      alpha: the scan test's level (step 4): a small tight cluster is an exit when the fitted model
        makes that many queries there this unlikely, corrected for the number of places tried.
      criterion: "icl" (default): the exits chosen by BIC, or fewer where the integrated completed
        likelihood prefers them (BIC plus twice the entropy of the queries' assignment to exits:
        two exits that overlap pay for every query they share); "bic": BIC alone, which splits an
        exit whose times are not bell-shaped but keeps more of the exits that overlap.
      replication_level: with R >= 2 passes, two neighbouring exits stay apart only when their split
        replicates on passes it was not read from (step 5) at this level (Bonferroni-corrected over
        the boundaries); 0 switches the check off.
      order: int[R, N] with runtimes [R, N]: the order each pass measured the queries in
        (`oracle.QueryResult.pass_order`); None: query order in every pass.
      every_pass: with R >= 3 passes, read the exits from every pass of every query (`_passes`: a
        mixture over queries, each query's passes drawn from its exit's time plus one shared noise);
        False (default): from one summary time per query (steps 1-5 below), as with R < 3.

    Returns (exit_ids int32[N] 0-based, num_exits) [+ boundaries in seconds]. A single hump is
    reported with a warning and num_exits = 1.
    """
    fit = analyse_timing(
        runtimes,
        min_size=min_size,
        drift=drift,
        alpha=alpha,
        criterion=criterion,
        replication_level=replication_level,
        order=order,
        every_pass=every_pass,
    )
    if fit.num_exits == 1:
        warnings.warn(
            "the runtimes form a single hump: no exit boundary is visible (a victim that always exits at "
            "the same place, answers in constant time, or timings too noisy; try more timing passes)",
            stacklevel=2,
        )
    out = (fit.exit_ids, fit.num_exits)
    return (*out, fit.boundaries) if return_boundaries else out


def analyse_timing(
    runtimes,
    *,
    min_size: int = 2,
    drift: bool = True,
    alpha: float = 1e-3,
    criterion: str = "icl",
    replication_level: float = 1e-3,
    order=None,
    every_pass: bool = False,
) -> TimingFit:
    """`estimate_exits` with everything it found (`TimingFit`), e.g. for adaptive re-timing."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    arr = np.asarray(runtimes, dtype=np.float64)
    t = fastest(arr)
    if order is not None and arr.ndim != 2:
        raise ValueError("order (the measurement order of every pass) goes with runtimes [R, N]")
    order = _check_order(order, arr.shape)
    if t.size < 2:
        raise ValueError(f"need at least 2 runtimes to find exits; got {t.size}")
    x = np.log(t)
    min_size = max(2, int(min_size))
    every_log, summary = np.log(arr), np.min
    if every_pass and arr.ndim == 2 and arr.shape[0] >= 3:
        return _from_every_pass(every_log, min_size, drift, order)
    if arr.ndim == 2 and arr.shape[0] >= 3:
        x, every_log, summary, spread = _summary_choice(every_log, min_size, drift, order)
    else:
        spread = _noise_spread(x, min_size)
    if drift and x.size >= 400:  # drift common to every pass: along the queries' order
        steady = _drift.remove_single(x, spread)
        if steady is not None:
            x = steady
            spread = _noise_spread(x, min_size)  # the noise left once the drift is gone
    cuts, model, fitter, center = fit_exits(x, spread, min_size, alpha, criterion)
    if arr.ndim == 2 and arr.shape[0] >= 2 and replication_level > 0:
        cuts, merged = keep_replicated(every_log, x, cuts, replication_level, summary)
        if merged:  # the model of the merged exits, for the confidence below
            start = model
            for j in merged:
                start = _em.Mixture(*_merged(start, j), nll=0.0, bic=0.0, icl=0.0)
            (model,) = fitter.fit_many([(start.mu, start.sigma, start.weight, start.tau, start.rho)])
    exit_ids = np.searchsorted(np.asarray(cuts), x, side="right").astype(np.int32)
    core, comp, bg = fitter.log_parts(model, (x - center) / spread, with_core=True)
    total = np.logaddexp(np.logaddexp.reduce(comp, axis=1), bg)
    confidence = np.exp(core.max(axis=1) - total).astype(np.float32)
    return TimingFit(exit_ids, len(cuts) + 1, [float(np.exp(c)) for c in cuts], confidence, x)


def _from_every_pass(every_log: np.ndarray, min_size: int, drift: bool, order) -> TimingFit:
    """`analyse_timing` by the all-passes model (`_passes`) on drift-free passes; the boundaries are
    the cuts of the fastest pass's time that best separate neighbouring exits (for plots and rules)."""
    if drift:
        steady = _drift.remove(every_log, 0.0, summary=None, order=order)
        every_log = every_log if steady is None else steady
    found = _passes.fit(every_log, min_size)
    x = every_log.min(axis=0)
    cuts = [
        _best_cut(x[found.exit_ids == k], x[found.exit_ids == k + 1]) for k in range(len(found.centres) - 1)
    ]
    return TimingFit(
        found.exit_ids, len(found.centres), [float(np.exp(c)) for c in cuts], found.confidence, x
    )


def _best_cut(early: np.ndarray, late: np.ndarray) -> float:
    """The threshold between two samples that misplaces the fewest of either (ties: the lowest such
    cut)."""
    if early.size == 0 or late.size == 0:
        return float(np.mean(np.concatenate([early, late])))
    values = np.sort(np.concatenate([early, late]))
    cuts = np.concatenate([[values[0] - 1e-9], 0.5 * (values[1:] + values[:-1]), [values[-1] + 1e-9]])
    errors = np.searchsorted(np.sort(early), cuts, side="right")  # early ones at or below the cut
    errors = (early.size - errors) + np.searchsorted(np.sort(late), cuts, side="right")
    return float(cuts[int(np.argmin(errors))])


def summarise_passes(every_log: np.ndarray, min_size: int = 2, drift: bool = True, order=None) -> np.ndarray:
    """One log-time per query from every pass f64[R, N] (R >= 3): the fastest pass, the median pass,
    or the median after removing the drift along the measurement order (`_drift`), whichever makes
    the exits' humps the tightest (the smallest within-hump spread, `_noise_spread`).

    Which one is best depends on the noise: with another process busy, most passes of a query are
    slowed by a delay of one side and the fastest pass is the undisturbed one; on a quieter machine
    the noise is closer to symmetric around a drifting speed and the median of drift-free passes is
    far tighter than the minimum (the minimum of R symmetric draws is itself a wide, low draw).
    The spread is measured without knowing any exit, so the attacker can make this choice."""
    return _summary_choice(every_log, min_size, drift, order)[0]


def _summary_choice(every_log: np.ndarray, min_size: int, drift: bool, order):
    """`summarise_passes` with how it summarised: (log-time per query, the passes' log-times it was
    read from (drift-free where the drift was removed), the summary over passes: np.min or
    np.median, its noise spread)."""
    options = [(every_log, np.min), (every_log, np.median)]
    if drift:
        steady = _drift.remove(every_log, 0.0, summary=None, order=order)
        if steady is not None:
            options.append((steady, np.median))
    summaries = [summary(passes, axis=0) for passes, summary in options]
    spreads = [_noise_spread(x, min_size) for x in summaries]
    best = int(np.argmin(spreads))
    return summaries[best], *options[best], spreads[best]


def _check_order(order, shape) -> np.ndarray | None:
    """The measurement order int[R, N] (each row a permutation of the queries), checked."""
    if order is None:
        return None
    arr = np.asarray(order)
    ok = arr.shape == shape and np.issubdtype(arr.dtype, np.integer)
    if not ok or not np.all(np.sort(arr, axis=1) == np.arange(shape[1])[None, :]):
        raise ValueError(
            f"order must hold, for each of the {shape[0]} passes, a permutation of the {shape[1]} "
            f"queries (int[R, N], as oracle.QueryResult.pass_order); got shape {arr.shape}, dtype {arr.dtype}"
        )
    return arr


def _noise_spread(x: np.ndarray, min_size: int) -> float:
    """The typical spread of one exit's log-times: robust sd inside the humps of a fine split."""
    spread = _kde._within_hump_spread(x, 0.25 * _kde.rule_of_thumb(x, "silverman"), 0.5, max(5, min_size))
    if not spread > 0:  # identical times (e.g. a coarse clock): any positive scale works
        spread = max(float(np.std(x)), 1e-6)
    return spread


def _start_centres(x: np.ndarray, spread: float) -> np.ndarray:
    """Centres of every hump of a fine density estimate (at most MAX_START, the most populated
    kept): an over-complete start for the backward search."""
    grid, density = _kde._grid_density(x, 0.25 * spread, points=4096)
    inner = np.arange(1, len(density) - 1)
    minima = inner[(density[inner] < density[inner - 1]) & (density[inner] <= density[inner + 1])]
    edges = [-np.inf, *grid[minima], np.inf]
    counts = np.histogram(x, bins=edges)[0]
    bounds = [0, *minima, len(density) - 1]
    peaks = np.array([grid[a + int(np.argmax(density[a : b + 1]))] for a, b in itertools.pairwise(bounds)])
    keep = counts >= 1
    peaks, counts = peaks[keep], counts[keep]
    if len(peaks) > MAX_START:
        peaks = peaks[np.sort(np.argsort(-counts, kind="stable")[:MAX_START])]
    return peaks if len(peaks) else np.array([float(np.median(x))])


def fit_exits(x: np.ndarray, spread: float, min_size: int, alpha: float = 1e-3, criterion: str = "icl"):
    """The mixture chosen by BIC, or one with fewer exits that the ICL prefers (criterion "icl";
    module docstring, step 3) on log-times x with noise spread `spread`.

    Returns (boundaries in log-time units, the fitted `_em.Mixture` in standardized units, its
    `_em.Fitter`, and the centre of the standardization: u = (x - centre) / spread). Small exits of
    the scan test (step 4) are included."""
    center = float(np.median(x))
    fitter = _em.Fitter(((x - center) / spread).astype(np.float32))
    start = (_start_centres(x, spread) - center) / spread

    def valid(m: _em.Mixture) -> bool:
        return fitter.expected_counts(m).min() >= min_size - 0.5 and fitter.dominates(m)

    (model,) = fitter.fit_many([fitter.start(start)])
    path = [model]
    while len(model.mu) > 1:  # one exit fewer (one removed, or two neighbours merged), refitted:
        k = len(model.mu)  # the best valid model by BIC, else the one that loses the least likelihood
        fewer = fitter.fit_many(
            [_without(model, j) for j in range(k)] + [_merged(model, j) for j in range(k - 1)]
        )
        good = [m for m in fewer if valid(m)]
        model = min(good, key=lambda m: m.bic) if good else min(fewer, key=lambda m: m.nll)
        path.append(model)
    best = min([m for m in path if valid(m)] or path[-1:], key=lambda m: m.bic)
    for _ in range(2):  # polish: one exit split, added or removed while BIC improves
        moved = [m for m in fitter.fit_many(_moves(fitter, best, min_size)) if valid(m)]
        top = min(moved, key=lambda m: m.bic, default=None)
        if top is None or top.bic >= best.bic - 1e-6:
            break
        best = top
    if criterion == "icl":  # fewer exits where the ICL prefers them: BIC's exits that overlap as one
        fewer = [m for m in path if valid(m) and len(m.mu) < len(best.mu)]
        best = min([best, *fewer], key=lambda m: m.icl)
    best = _small_exits(fitter, best, min_size, alpha)
    return [center + spread * b for b in fitter.boundaries(best)], best, fitter, center


def _without(m: _em.Mixture, j: int) -> tuple:
    keep = np.arange(len(m.mu)) != j
    weight = np.append(m.weight[:-1][keep], m.weight[-1])
    return m.mu[keep], m.sigma[keep], weight / weight.sum(), m.tau, m.rho


def _merged(m: _em.Mixture, j: int) -> tuple:
    """Exits j and j + 1 of m as one (moment-matched)."""
    w = m.weight[j : j + 2]
    share = w / max(w.sum(), 1e-12)
    mu = float(share @ m.mu[j : j + 2])
    var = float(share @ (m.sigma[j : j + 2] ** 2 + (m.mu[j : j + 2] - mu) ** 2))
    weight = np.concatenate([m.weight[:j], [w.sum()], m.weight[j + 2 :]])
    return (
        np.concatenate([m.mu[:j], [mu], m.mu[j + 2 :]]),
        np.concatenate([m.sigma[:j], [np.sqrt(var)], m.sigma[j + 2 :]]),
        weight,
        m.tau,
        m.rho,
    )


def _moves(fitter: _em.Fitter, m: _em.Mixture, min_size: int) -> list[tuple]:
    """Starts one step away from m: one exit removed, one split in two, one added where the data
    exceed the fitted density most."""
    k = len(m.mu)
    out = [_without(m, j) for j in range(k)] if k > 1 else []
    if k < _em.MAX_COMPONENTS:
        for j in range(k):
            mu = np.concatenate(
                [np.delete(m.mu, j), [m.mu[j] - 0.8 * m.sigma[j], m.mu[j] + 0.8 * m.sigma[j]]]
            )
            sigma = np.concatenate([np.delete(m.sigma, j), [0.6 * m.sigma[j]] * 2])
            w = np.concatenate([np.delete(m.weight[:-1], j), [m.weight[j] / 2] * 2, m.weight[-1:]])
            out.append((mu, sigma, w, m.tau, m.rho))
        for c, share in _excess(fitter, m, min_size):
            w = np.concatenate([m.weight[:-1], [share], m.weight[-1:]])
            out.append(
                (np.append(m.mu, c), np.append(m.sigma, np.median(m.sigma)), w / w.sum(), m.tau, m.rho)
            )
    return out


def _excess(fitter: _em.Fitter, m: _em.Mixture, min_size: int, how_many: int = 3):
    """Where the samples exceed the fitted density most (a fine KDE against the model smoothed alike):
    (position, share of the samples) of up to `how_many` places."""
    h = 0.5
    grid = fitter.grid(2048)
    observed = np.asarray(_kde.kde(fitter.samples, grid, h), np.float64)
    wide = dataclasses.replace(m, sigma=np.sqrt(m.sigma**2 + h**2))
    comp, bg = fitter.log_parts(wide, grid)
    expected = np.exp(comp).sum(axis=1) + np.exp(bg)
    excess = (observed - expected) * fitter.n * h * math.sqrt(2 * math.pi)  # ~ queries under one kernel
    picks = []
    for i in np.argsort(-excess):
        if excess[i] < min_size / 2 or len(picks) >= how_many:
            break
        if all(abs(grid[i] - p) > 1.5 for p, _ in picks) and np.all(np.abs(grid[i] - m.mu) > 1.0):
            picks.append((float(grid[i]), float(excess[i]) / fitter.n))
    return picks


def _small_exits(fitter: _em.Fitter, model: _em.Mixture, min_size: int, alpha: float, max_size: int = 12):
    """Step 4 of the module docstring: tight clusters of min_size..max_size queries where the fitted
    model expects almost none (a scan test), added as exits and refitted.

    A window of m consecutive sorted times, at most two noise spreads wide, widened by half a spread
    on each side, should hold lambda = N x (the model's probability of that interval) queries; it is
    an exit of its own when P(Poisson(lambda) >= m) < alpha / (the number of windows tried)."""
    u = np.sort(fitter.samples.astype(np.float64))
    n = u.size
    grid = fitter.grid(16384)
    comp, bg = fitter.log_parts(model, grid)
    density = np.exp(comp).sum(axis=1) + np.exp(bg)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    tried, found = 0, []
    for m in range(min_size, min(max_size, n) + 1):
        lo, hi = u[: n - m + 1], u[m - 1 :]
        tight = hi - lo <= 2.0
        lam = n * (np.interp(hi + 0.5, grid, cdf) - np.interp(lo - 0.5, grid, cdf))
        p = stats.poisson.sf(m - 1, np.maximum(lam, 1e-300))
        tried += int(tight.sum())
        for i in np.flatnonzero(tight):
            found.append((p[i], lo[i], hi[i], m))
    if not found or tried == 0:
        return model
    keep = []
    for p, lo, hi, m in sorted(found):
        if p >= alpha / tried:
            break
        overlaps = any(lo <= b + 0.5 and hi >= a - 0.5 for _, a, b, _ in keep)
        near_centre = np.any(np.abs(model.mu - 0.5 * (lo + hi)) < 1.0)
        if not overlaps and not near_centre:
            keep.append((p, lo, hi, m))
    if not keep or len(model.mu) + len(keep) > _em.MAX_COMPONENTS:
        return model
    mu = np.concatenate([model.mu, [0.5 * (lo + hi) for _, lo, hi, _ in keep]])
    sigma = np.concatenate([model.sigma, [max((hi - lo) / 2, 0.3) for _, lo, hi, _ in keep]])
    w = np.concatenate([model.weight[:-1], [m / n for *_, m in keep], model.weight[-1:]])
    (refit,) = fitter.fit_many([(mu, sigma, w / w.sum(), model.tau, model.rho)])
    return refit if fitter.dominates(refit) else model


def keep_replicated(
    every_log: np.ndarray, x: np.ndarray, cuts: list[float], level: float = 1e-3, summary=np.min
):
    """Step 5 of the module docstring: the boundaries (log-time cuts) whose split replicates across
    passes; the one least convincing (the largest `replication_p`, above level / the number of
    boundaries) is dropped, then the rest tested again. every_log: f64[R, N] log-times of every
    pass; x: the one log-time per query the cuts were read from (`summary` over every pass).

    Returns (kept cuts, the exits merged in turn: j means exits j and j + 1 became one). The kept
    cuts stay where the full model put them: a model refitted after a merge gives the merged exit
    one broad shape, and a broad neighbour can take over a narrow exit's fast edge."""
    cuts, merged = list(cuts), []
    while cuts:
        ids = np.searchsorted(np.asarray(cuts), x, side="right")
        p = [replication_p(every_log, ids, j, summary) for j in range(len(cuts))]
        j = int(np.argmax(p))
        if p[j] <= level / len(cuts):
            break
        del cuts[j]
        merged.append(j)
    return cuts, merged


def replication_p(every_log: np.ndarray, exit_ids: np.ndarray, j: int, summary=np.min) -> float:
    """The p-value that exits j and j + 1 are one exit split by noise.

    The passes are dealt into two halves (even and odd passes: both span the whole measurement).
    The queries of the two exits are ranked by their time in one half (`summary` over its passes,
    as the exits were read: the fastest or the median) and the n_j fastest called the earlier
    exit; in the other half, the earlier exit's times must be lower (a one-sided Mann-Whitney
    test). Both ways round; the larger p counts. When the two exits are one, a query's rank in one
    half says nothing about the other half (p is uniform; this needs the passes measured in fresh
    orders, `oracle.measurement_order`); when they are two, the same queries are fast in both."""
    pair = (exit_ids == j) | (exit_ids == j + 1)
    n_early = int(np.sum(exit_ids == j))
    if n_early == 0 or n_early == int(pair.sum()):
        return 1.0  # an exit no query reaches is not seen
    halves = summary(every_log[0::2, pair], axis=0), summary(every_log[1::2, pair], axis=0)
    worst = 0.0
    for ranked, tested in (halves, halves[::-1]):
        order = np.argsort(ranked, kind="stable")
        early, late = tested[order[:n_early]], tested[order[n_early:]]
        worst = max(worst, float(stats.mannwhitneyu(early, late, alternative="less").pvalue))
    return worst
