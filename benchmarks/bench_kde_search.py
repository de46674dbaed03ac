"""Benchmark the timing analysis: jnp KDE vs scipy.stats.gaussian_kde, vectorized threshold search vs a
plain NumPy loop over the candidates.

    .venv/bin/python benchmarks/bench_kde_search.py [--sizes 1000 10000 100000] [--search-n 10000]

KDE: n runtimes evaluated at the same n points (the paper evaluates the density at the sorted
runtimes), same bandwidth, jit warm-up excluded, median of 3; both methods of `exits.kde`: "binned"
(FFT on a grid, with its largest deviation from the exact sum) and "exact" (the default, the direct
sum). Targets: >= 20x scipy at n = 1e4.
Search: N queries, K = 6 exits, one coordinate-ascent sweep's work per exit = the objective for every
candidate threshold of that exit. mexjax scores all candidates at once (one sort, a suffix sum, a
vectorized binary search; the sort is included here although a search sorts each exit only once);
the reference loops over the candidates in NumPy. "Whole search" = one cold call of
search_thresholds(method="ascent"). Targets: whole search under 10 s, >= 100x the loop.
Prints Markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import jax
import numpy as np
from bench_nets import median_time  # benchmarks/ is on sys.path when this script runs
from scipy import stats

from mexjax import exits
from mexjax.exits import _search


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


def timed(fn, repeats=3):
    fn()  # warm-up (compilation) excluded
    return median_time(fn, repeats)


def kde_rows(sizes, machine):
    rng = np.random.default_rng(0)
    for n in sizes:
        x = np.log(rng.choice([0.3, 0.5, 0.7, 1.0, 1.2, 1.6], n) * np.exp(0.03 * rng.normal(size=n)))
        h = exits.rule_of_thumb(x, "scott")
        binned = timed(lambda x=x, h=h: exits.kde(x, x, h, method="binned"))
        exact = timed(lambda x=x, h=h: exits.kde(x, x, h))
        reference = timed(lambda x=x, h=h: stats.gaussian_kde(x, bw_method=h / x.std(ddof=1))(x), repeats=1)
        exact_values = np.asarray(exits.kde(x, x, h), np.float64)
        error = np.max(np.abs(np.asarray(exits.kde(x, x, h, method="binned")) - exact_values))
        for name, ours in (
            (f'"binned", {error / exact_values.max():.1e} of the peak from exact', binned),
            ('"exact"', exact),
        ):
            print(
                f"| KDE {name}, n = {n:,} runtimes at n points | {machine} | {datetime.date.today()} | "
                f"`benchmarks/bench_kde_search.py` | {ours * 1e3:.2f} ms | scipy.stats.gaussian_kde "
                f"{reference * 1e3:.1f} ms | {reference / ours:.1f}x faster |",
                flush=True,
            )


def numpy_loop_exit(conf_i, a, b, cands):
    """Reference: the objective of each candidate threshold, one candidate at a time."""
    best, best_score = None, -1
    for c in cands:
        leave = conf_i >= c
        score = int(np.sum(np.where(leave, a, b)))
        if score > best_score:
            best, best_score = c, score
    return best, best_score


def search_rows(n, k, machine):
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.2, 1.0, (n, k)).astype(np.float32)
    hidden = np.sort(rng.uniform(0.5, 0.95, k - 1)).astype(np.float32)
    targets = np.array(exits.assign(conf, hidden))
    flip = rng.uniform(size=n) < 0.2
    targets[flip] = rng.integers(0, k, flip.sum())
    start = time.perf_counter()
    found = exits.search_thresholds(conf, targets, method="ascent")
    full = time.perf_counter() - start
    cands = _search.candidates(conf, targets, 0)
    a = (targets == 0).astype(np.int32)
    b = (targets > 0).astype(np.int32)
    ours = timed(lambda: _search._scores(conf[:, 0], a, b, cands))
    reference = timed(lambda: numpy_loop_exit(conf[:, 0], a, b, cands), repeats=1)
    assert numpy_loop_exit(conf[:, 0], a, b, cands)[1] == int(
        np.max(np.asarray(_search._scores(conf[:, 0], a, b, cands)))
    )
    print(
        f"| threshold search, N = {n:,}, K = {k}: all {len(cands):,} candidates of one exit | {machine} | "
        f"{datetime.date.today()} | `benchmarks/bench_kde_search.py` | {ours * 1e3:.2f} ms (whole search: "
        f"{full * 1e3:.0f} ms, {exits.objective(conf, targets, found)}/{n} matched) | NumPy loop over "
        f"candidates {reference * 1e3:.0f} ms | {reference / ours:.0f}x faster |",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--search-n", type=int, default=10000)
    parser.add_argument("--search-k", type=int, default=6)
    args = parser.parse_args(argv)
    machine = f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}"
    machine += f", JAX {jax.__version__}"
    kde_rows(args.sizes, machine)
    search_rows(args.search_n, args.search_k, machine)


if __name__ == "__main__":
    main()
