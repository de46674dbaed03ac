"""Exits from every timing pass of every query: atoms of a mixture over queries.

A query's exit is the same in each of its R timing passes, and one pass's noise is one process for
every exit (on log-times: multiplicative). So query i's passes are R draws of
    y = theta_k + e,    e ~ g  (one noise distribution g for every exit)
with theta_k the time of its exit k. On a fine grid of candidate times, l[i, theta] =
sum_r log g(y_ir - theta) says how well theta explains query i: every pass counts, not only the
fastest, and a query whose passes all sit apart from its neighbours' is its own exit however few
queries share it. The exits are the atoms of a finite mixture over the grid:
  1. g and a nonparametric mixing distribution over the grid, fitted together by EM (`_joint_noise`):
     each query's time is a latent grid point; g is the histogram of every pass's offset from it,
     weighted by its posterior. No exit is needed: a query's passes share one time, so the repeats
     tell the noise from the spread of times (started from every pass against the median of the
     query's other passes, `noise_table`). The mixing weights concentrate on few points: their peaks
     are the over-complete start;
  2. one atom fewer at a time (one removed, or two neighbours merged: whichever keeps the most
     likelihood), each candidate refitted by EM (weights, and each atom's grid point), in one batch;
  3. the number of exits: the lowest integrated completed likelihood (ICL: BIC plus twice the entropy
     of the queries' assignment to exits) among models where every exit holds >= min_size queries.
An exit's time may also vary a little from query to query (the machine's state when each was timed):
each atom is then a Gaussian of s grid steps, s in SPREADS chosen by the same criterion.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

MAX_ATOMS = 16
SPREADS = (0.0, 1.0, 2.0, 4.0)  # an exit's own spread over queries, in grid steps
MAX_GRID = 512
NOISE_ITERATIONS = 30
EM_ITERATIONS = 20
_OUTLIER_SHARE = 1e-3  # of passes: uniform over the whole range (a pass no exit explains)


@dataclasses.dataclass(frozen=True)
class PassFit:
    """What `fit` read: each query's exit (0-based, in order of time), its posterior, the exits'
    log-times (drift-free units of the input), the spread s chosen and the criterion's value."""

    exit_ids: np.ndarray  # int32[N]
    confidence: np.ndarray  # f32[N]
    centres: np.ndarray  # f64[K] log-times
    spread_steps: float
    icl: float


def noise_table(y: np.ndarray, step: float):
    """One pass's noise g on a grid of steps: (centres f64[C], log g f64[C], log density beyond).

    Each pass is measured against the median of the same query's other passes, so g holds the noise of
    a pass (and a little of the median's); it needs no exit: a query's exit is the same in every pass."""
    residuals = []
    for r in range(y.shape[0]):
        residuals.append(y[r] - np.median(np.delete(y, r, axis=0), axis=0))
    e = np.concatenate(residuals)
    lo, hi = np.quantile(e, 0.0005) - 10 * step, np.quantile(e, 0.9995) + 10 * step
    edges = np.arange(lo, hi + step, step)
    hist = ndimage.gaussian_filter1d(np.histogram(e, edges)[0].astype(np.float64), 1.0)
    hist /= hist.sum() * step
    span = float(y.max() - y.min()) + hi - lo
    floor = _OUTLIER_SHARE / span
    return 0.5 * (edges[1:] + edges[:-1]), np.log((1 - _OUTLIER_SHARE) * hist + floor), math.log(floor)


def _bucket(n: int, least: int) -> int:
    return 1 << max(math.ceil(math.log2(max(n, 1))), int(math.log2(least)))


def _offsets(row, size, offset, table_size):
    """Index into the noise table of each pass's offset from every grid point: int32[N, G]."""
    return jnp.clip(row[:, None] - jnp.arange(size)[None, :] - offset, 0, table_size - 1)


def _pass_loglik(bins, log_g, offset, size):
    """l[i, g] = sum_r log g(offset of pass r of query i from grid point g): f32[N, G]. bins int32[R, N]:
    each pass's grid index; log_g over offsets offset, offset + 1, ... (grid steps)."""

    def add(total, row):
        return total + jnp.take(log_g, _offsets(row, size, offset, log_g.size)), None

    return jax.lax.scan(add, jnp.zeros((bins.shape[1], size), jnp.float32), bins)[0]


@functools.partial(jax.jit, static_argnames=("iterations",))
def _joint_noise(bins, valid, on_grid, log_g, offset, iterations=NOISE_ITERATIONS):
    """EM for one pass's noise g (log, over offsets in grid steps) and the mixing weights over the
    grid together. Returns (log g, mixing weights f32[G], l[i, g] under the final g)."""
    size = on_grid.size
    n = jnp.sum(valid)
    kernel = jnp.exp(-0.5 * (jnp.arange(-3, 4, dtype=jnp.float32) / 0.7) ** 2)
    kernel = kernel / jnp.sum(kernel)
    floor = jnp.log(_OUTLIER_SHARE / log_g.size)

    def step(_, carry):
        log_g, log_pi = carry
        a = _pass_loglik(bins, log_g, offset, size) + log_pi[None, :]
        post = jnp.exp(a - jax.nn.logsumexp(a, axis=1, keepdims=True)) * valid[:, None]
        pi = jnp.sum(post, axis=0) / n

        def scatter(hist, row):
            return hist.at[_offsets(row, size, offset, log_g.size)].add(post), None

        hist = jax.lax.scan(scatter, jnp.zeros(log_g.size, jnp.float32), bins)[0]
        hist = jnp.convolve(hist, kernel, mode="same")
        hist = hist / jnp.sum(hist)
        log_g = jnp.logaddexp(jnp.log1p(-_OUTLIER_SHARE) + jnp.log(jnp.maximum(hist, 1e-30)), floor)
        log_pi = jnp.where(on_grid, jnp.log(jnp.maximum(pi, 1e-30)), -jnp.inf)
        return log_g, log_pi

    log_pi = jnp.where(on_grid, -jnp.log(jnp.sum(on_grid.astype(jnp.float32))), -jnp.inf)
    log_g, log_pi = jax.lax.fori_loop(0, iterations, step, (log_g, log_pi))
    return log_g, jnp.exp(log_pi), _pass_loglik(bins, log_g, offset, size)


def _em(lik, valid, pos, log_w, active):
    """EM_ITERATIONS steps of a mixture of atoms at grid points `pos` (inactive: weight 0). Returns
    (pos, log_w, log-likelihood, entropy of the assignment, responsibilities f32[N, K])."""

    def e_step(pos, log_w):
        a = jnp.take(lik, pos, axis=1) + jnp.where(active, log_w, -jnp.inf)[None, :]
        total = jax.nn.logsumexp(a, axis=1)
        return total, jnp.exp(a - total[:, None]) * valid[:, None]

    def step(_, carry):
        pos, log_w = carry
        _, resp = e_step(pos, log_w)
        counts = jnp.sum(resp, axis=0)
        log_w = jnp.log(jnp.maximum(counts, 1e-30) / jnp.sum(valid))
        pos = jnp.where(active, jnp.argmax(resp.T @ lik, axis=1), pos)
        return pos, log_w

    pos, log_w = jax.lax.fori_loop(0, EM_ITERATIONS, step, (pos, log_w))
    total, resp = e_step(pos, log_w)
    entropy = -jnp.sum(jnp.where(resp > 0, resp * jnp.log(jnp.maximum(resp, 1e-30)), 0.0))
    return pos, log_w, jnp.sum(total * valid), entropy, resp


_em_many = jax.jit(jax.vmap(_em, in_axes=(None, None, 0, 0, 0)))


def _peaks(pi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the mixing weights holding at least half a query each, with the mass between
    their neighbouring minima (at most MAX_ATOMS, the heaviest)."""
    inner = np.arange(1, pi.size - 1)
    minima = inner[(pi[inner] < pi[inner - 1]) & (pi[inner] <= pi[inner + 1])]
    bounds = [0, *minima, pi.size]
    pos, mass = [], []
    for a, b in itertools.pairwise(bounds):
        if pi[a:b].sum() * n >= 0.5:
            pos.append(a + int(np.argmax(pi[a:b])))
            mass.append(pi[a:b].sum())
    pos, mass = np.asarray(pos, np.int32), np.asarray(mass)
    if pos.size == 0:
        return np.asarray([int(np.argmax(pi))], np.int32), np.ones(1)
    keep = np.sort(np.argsort(-mass, kind="stable")[:MAX_ATOMS])
    return pos[keep], mass[keep] / mass[keep].sum()


class _Search:
    """The backward search of one likelihood matrix (module docstring, steps 2-3)."""

    def __init__(self, lik: jax.Array, valid: jax.Array, n: int, min_size: int):
        self.lik, self.valid, self.n, self.min_size = lik, valid, n, min_size

    def fit(self, starts: list[tuple[np.ndarray, np.ndarray]]):
        b = _bucket(len(starts), 1)
        pos = np.zeros((b, MAX_ATOMS), np.int32)
        log_w = np.full((b, MAX_ATOMS), -np.inf, np.float32)
        active = np.zeros((b, MAX_ATOMS), bool)
        for i in range(b):
            p, w = starts[min(i, len(starts) - 1)]
            pos[i, : len(p)], log_w[i, : len(p)], active[i, : len(p)] = p, np.log(np.maximum(w, 1e-30)), True
        out = _em_many(self.lik, self.valid, jnp.asarray(pos), jnp.asarray(log_w), jnp.asarray(active))
        pos, log_w, ll, ent, resp = (np.asarray(o) for o in out)
        models = []
        for i, (p, _) in enumerate(starts):
            k = len(p)
            order = np.argsort(pos[i, :k], kind="stable")
            models.append(
                {
                    "pos": pos[i, :k][order],
                    "w": np.exp(log_w[i, :k][order]),
                    "ll": float(ll[i]),
                    "icl": -2 * float(ll[i]) + 2 * float(ent[i]) + (2 * k - 1) * math.log(self.n),
                    "resp": resp[i, : self.n, :k][:, order],
                }
            )
        return models

    def valid_model(self, m) -> bool:
        counts = np.bincount(np.argmax(m["resp"], axis=1), minlength=len(m["pos"]))
        return bool(counts.min() >= self.min_size) and len(np.unique(m["pos"])) == len(m["pos"])

    def run(self, pos: np.ndarray, w: np.ndarray):
        (model,) = self.fit([(pos, w)])
        path = [model]
        while len(model["pos"]) > 1:
            p, w, k = model["pos"], model["w"], len(model["pos"])
            starts = [(np.delete(p, j), np.delete(w, j) / np.delete(w, j).sum()) for j in range(k)]
            for j in range(k - 1):
                both = w[j] + w[j + 1]
                at = round(float(w[j] * p[j] + w[j + 1] * p[j + 1]) / max(float(both), 1e-30))
                starts.append(
                    (np.concatenate([p[:j], [at], p[j + 2 :]]), np.concatenate([w[:j], [both], w[j + 2 :]]))
                )
            model = max(self.fit(starts), key=lambda m: m["ll"])
            path.append(model)
        return min([m for m in path if self.valid_model(m)] or path[-1:], key=lambda m: m["icl"])


def fit(y: np.ndarray, min_size: int = 2) -> PassFit:
    """The exits of queries timed R >= 3 times: y f64[R, N] log-times (drift removed by the caller)."""
    passes, n = y.shape
    if passes < 3:
        raise ValueError(f"the all-passes model needs R >= 3 passes per query; got {passes}")
    ordered = np.sort(y, axis=0)
    step = max(float(np.median(ordered[1] - ordered[0])) / 2, 1e-6)
    top = float(np.median(y, axis=0).max())
    step = max(step, (top - float(y.min()) + 20 * step) / MAX_GRID)
    grid = np.arange(y.min() - 10 * step, top + 10 * step, step)
    # offsets of a pass from a grid point, in steps: every one the data can show
    offset = int(np.floor((y.min() - grid[-1]) / step)) - 2
    offsets = np.arange(offset, int(np.ceil((y.max() - grid[0]) / step)) + 3)
    centres, log_g, log_floor = noise_table(y, step)
    log_g0 = np.interp(offsets * step, centres, log_g, left=log_floor, right=log_floor)
    size_n, size_g, size_e = _bucket(n, 256), _bucket(grid.size, 64), _bucket(offsets.size, 64)
    bins = np.rint((y - grid[0]) / step).astype(np.int32)
    bins = np.pad(bins, ((0, 0), (0, size_n - n)), mode="edge")
    valid = jnp.asarray(np.arange(size_n) < n, jnp.float32)
    on_grid = jnp.asarray(np.arange(size_g) < grid.size)
    log_g0 = np.pad(log_g0, (0, size_e - offsets.size), constant_values=log_floor)
    _, pi, lik0 = _joint_noise(
        jnp.asarray(bins), valid, on_grid, jnp.asarray(log_g0, jnp.float32), jnp.int32(offset)
    )
    pi, lik0 = (
        np.asarray(pi, np.float64)[: grid.size],
        np.asarray(lik0, np.float64) * np.asarray(valid)[:, None],
    )
    lik0[:, grid.size :] = -np.inf  # padded grid points are no exit's time
    best = None
    for s in SPREADS:
        lik = lik0 if s == 0 else _widened(lik0, s, grid.size)
        lik_j = jnp.asarray(np.maximum(lik, -1e30), jnp.float32)
        model = _Search(lik_j, valid, n, min_size).run(*_peaks(_smoothed(pi, s), n))
        if best is None or model["icl"] < best[0]["icl"]:
            best = (model, s)
    model, s = best
    return PassFit(
        exit_ids=np.argmax(model["resp"], axis=1).astype(np.int32),
        confidence=model["resp"].max(axis=1).astype(np.float32),
        centres=grid[model["pos"]],
        spread_steps=s,
        icl=model["icl"],
    )


def _smoothed(pi: np.ndarray, steps: float) -> np.ndarray:
    return pi if steps == 0 else ndimage.gaussian_filter1d(pi, steps, mode="constant")


def _widened(lik: np.ndarray, steps: float, size: int) -> np.ndarray:
    """log of each query's likelihood convolved with a Gaussian of `steps` grid steps (an exit's time
    spread over queries)."""
    top = np.max(lik, axis=1, keepdims=True)
    smooth = ndimage.gaussian_filter1d(np.exp(lik[:, :size] - top), steps, axis=1, mode="constant")
    out = np.full_like(lik, -np.inf)
    out[:, :size] = np.log(np.maximum(smooth, 1e-300)) + top
    return out
