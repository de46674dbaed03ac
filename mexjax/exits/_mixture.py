"""Exits as a mixture of humps of one noise shape: finds the exits that the KDE's density minima miss.

The KDE rule (`_kde`) needs a density minimum between two exits, so an exit that shows only as a
shoulder of a big neighbour (147 queries 3.5 spreads from a hump of 1,375) merges into it. Timing noise
is one process at every exit; on log-times every exit's hump has a similar shape. Here exit k is the
component
    f_k(x) = (1 - rho) N(x; mu_k, sigma_k) + rho EMG(x; mu_k, sigma_k, tau)
(a Gaussian core, and a share rho slowed by an exponential delay of mean tau: the slow right tails),
rho and tau shared by all exits, sigma_k kept within a factor of the pooled spread, plus a uniform
background for scattered outliers. Starting from the KDE's humps, a component is added where the
data most exceed the fitted density, or removed, while the Bayesian information criterion (BIC) improves.
Every fit is one jitted Optax (Adam) loop on the log-times binned finely (1,024 bins over their range
at the least), so one compiled fit serves every query count; a call takes about a second on 2 cores.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import log_ndtr, logsumexp

from mexjax.exits._density import kde

MAX_COMPONENTS = 8
_STEPS = 200
_BINS = 1024
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A fitted mixture in standardized log-time units u = (x - center) / scale."""

    mu: np.ndarray  # f32[K] sorted
    log_sigma: np.ndarray  # f32[K]
    log_weight: np.ndarray  # f32[K + 1], the last one the background's
    tau: float
    rho: float
    nll: float  # total negative log-likelihood (in u units)
    bic: float


def _component_logpdf(u, mu, log_sigma, log_tau, logit_rho):
    """log f_k(u) for every sample and component: f32[N, K]."""
    sigma = jnp.exp(log_sigma)[None, :]
    z = (u[:, None] - mu[None, :]) / sigma
    log_core = -0.5 * z**2 - jnp.log(sigma) - _LOG_SQRT_2PI
    lam = jnp.exp(-log_tau)
    log_tail = (
        -log_tau + lam * (mu[None, :] - u[:, None]) + 0.5 * (lam * sigma) ** 2 + log_ndtr(z - lam * sigma)
    )
    return jnp.logaddexp(jax.nn.log_sigmoid(-logit_rho) + log_core, jax.nn.log_sigmoid(logit_rho) + log_tail)


def _log_weights(logits, active):
    masked = jnp.where(jnp.concatenate([active, jnp.array([True])]), logits, -1e30)
    return jax.nn.log_softmax(masked)


def _bounded(params, sigma_range):
    lo, hi = sigma_range
    return {
        **params,
        "log_sigma": jnp.clip(params["log_sigma"], math.log(lo), math.log(hi)),
        "log_tau": jnp.clip(params["log_tau"], math.log(0.05), math.log(20.0)),
        "logit_rho": jnp.clip(params["logit_rho"], -7.0, 7.0),
    }


def _nll(params, u, weight, active, log_span, sigma_range):
    p = _bounded(params, sigma_range)
    log_w = _log_weights(p["logits"], active)
    comp = _component_logpdf(u, p["mu"], p["log_sigma"], p["log_tau"], p["logit_rho"]) + log_w[None, :-1]
    comp = jnp.where(active[None, :], comp, -jnp.inf)
    log_f = jnp.logaddexp(logsumexp(comp, axis=1), log_w[-1] - log_span)
    return -jnp.sum(weight * log_f)


@functools.partial(jax.jit, static_argnames=("sigma_range",))
def _fit(params, u, weight, active, log_span, sigma_range):
    """Adam on the negative log-likelihood; returns the bounded parameters and the final NLL."""
    optimizer = optax.adam(0.05)
    n = jnp.sum(weight)

    def step(carry, _):
        p, state = carry
        grads = jax.grad(_nll)(p, u, weight, active, log_span, sigma_range)
        grads = jax.tree.map(lambda g: g / n, grads)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
            updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=_STEPS)
    params = _bounded(params, sigma_range)
    return params, _nll(params, u, weight, active, log_span, sigma_range)


@functools.partial(jax.jit, static_argnames=("sigma_range",))
def _grid_logpdf(params, grid, active, sigma_range):
    """Per-component log(w_k f_k) on a grid, f32[G, K] (inactive: -inf), and the background's."""
    p = _bounded(params, sigma_range)
    log_w = _log_weights(p["logits"], active)
    comp = _component_logpdf(grid, p["mu"], p["log_sigma"], p["log_tau"], p["logit_rho"]) + log_w[None, :-1]
    return jnp.where(active[None, :], comp, -jnp.inf), log_w[-1]


def _padded(mu, log_sigma, log_weight, tau: float, rho: float) -> tuple[dict, jax.Array]:
    """Parameters of K exits (log weights [K], the background's appended) padded to MAX_COMPONENTS, and
    the mask of the active ones: one shape for every K, so each jitted function compiles once."""
    k = len(mu)
    pad = MAX_COMPONENTS - k
    params = {
        "mu": jnp.asarray(np.pad(mu, (0, pad)), jnp.float32),
        "log_sigma": jnp.asarray(np.pad(log_sigma, (0, pad)), jnp.float32),
        "logits": jnp.asarray(
            np.concatenate([np.pad(log_weight[:k], (0, pad)), log_weight[k:]]), jnp.float32
        ),
        "log_tau": jnp.float32(math.log(tau)),
        "logit_rho": jnp.float32(math.log(rho / (1 - rho))),
    }
    return params, jnp.asarray(np.arange(MAX_COMPONENTS) < k)


class _Fitter:
    """Fits mixtures with given component locations to one sample (binned once)."""

    def __init__(self, u: np.ndarray, min_count: int):
        self.samples = u
        self.n = u.size
        self.lo, self.hi = float(u.min()), float(u.max())
        # the likelihood of the samples binned finely (bins of <= 1/16 of the pooled spread, or _BINS
        # over the range): one compiled fit serves every query count
        bins = max(_BINS, int(min((self.hi - self.lo) * 16, 1 << 16)))
        counts, edges = np.histogram(u, bins=bins, range=(self.lo, self.hi + 1e-6))
        centres = 0.5 * (edges[:-1] + edges[1:])
        # only bins that hold samples add to the likelihood: keep those, padded with empty bins to a
        # power of two (a few compiled shapes serve every sample)
        full = np.flatnonzero(counts)
        size = 1 << math.ceil(math.log2(max(full.size, 64)))
        self.bin_centres = jnp.asarray(np.pad(centres[full], (0, size - full.size), mode="edge"), jnp.float32)
        self.bin_counts = jnp.asarray(np.pad(counts[full], (0, size - full.size)), jnp.float32)
        self.log_span = jnp.float32(math.log(max(self.hi - self.lo, 1e-3)))
        self.min_count = min_count
        self.sigma_range = (0.15, 3.0)  # standardized units: the pooled spread is 1

    def fit(self, mu, log_sigma=None, log_weight=None, tau: float = 1.0, rho: float = 0.2) -> Mixture:
        """Fit from a start: centres mu[K] (and their log sigma, log weights[K]; default equal)."""
        k = len(mu)
        log_sigma = np.zeros(k) if log_sigma is None else np.asarray(log_sigma)
        log_weight = np.full(k, -math.log(k)) if log_weight is None else np.asarray(log_weight)
        params, active = _padded(mu, log_sigma, np.append(log_weight, math.log(0.02)), tau, rho)
        fitted, nll = _fit(params, self.bin_centres, self.bin_counts, active, self.log_span, self.sigma_range)
        order = np.argsort(np.asarray(fitted["mu"])[:k])
        log_w = np.asarray(_log_weights(fitted["logits"], active))
        free = 3 * k + 3  # mu, sigma, weight per exit; tau, rho, the background weight
        return Mixture(
            mu=np.asarray(fitted["mu"])[:k][order],
            log_sigma=np.asarray(fitted["log_sigma"])[:k][order],
            log_weight=np.concatenate([log_w[:k][order], log_w[-1:]]),
            tau=float(np.exp(fitted["log_tau"])),
            rho=float(jax.nn.sigmoid(fitted["logit_rho"])),
            nll=float(nll),
            bic=2 * float(nll) + free * math.log(self.n),
        )

    def moves(self, m: Mixture) -> list[Mixture]:
        """Every model one step away: one exit removed, split in two, or added where data exceed."""
        w, shape = m.log_weight[:-1], {"tau": m.tau, "rho": m.rho}
        out = []
        for j in range(len(m.mu)):
            if len(m.mu) > 1:
                keep = np.arange(len(m.mu)) != j
                out.append(self.fit(m.mu[keep], m.log_sigma[keep], w[keep], **shape))
            if len(m.mu) < MAX_COMPONENTS:
                s = math.exp(m.log_sigma[j])
                mu = np.concatenate([np.delete(m.mu, j), [m.mu[j] - 0.8 * s, m.mu[j] + 0.8 * s]])
                ls = np.concatenate([np.delete(m.log_sigma, j), [m.log_sigma[j] + math.log(0.6)] * 2])
                lw = np.concatenate([np.delete(w, j), [w[j] - math.log(2)] * 2])
                out.append(self.fit(mu, ls, lw, **shape))
        if len(m.mu) < MAX_COMPONENTS:
            for c, count in _insertion_candidates(self, m):
                mu = np.concatenate([m.mu, [c]])
                ls = np.concatenate([m.log_sigma, [np.median(m.log_sigma)]])
                lw = np.concatenate([w, [math.log(max(count, self.min_count) / self.n)]])
                out.append(self.fit(mu, ls, lw, **shape))
        return out

    def grid(self, points: int = 2048) -> np.ndarray:
        return np.linspace(self.lo - 1.0, self.hi + 1.0, points)

    def log_parts(self, model: Mixture, grid: np.ndarray, extra_sigma: float = 0.0):
        """log(w_k f_k) on the grid (sigma widened by `extra_sigma` in quadrature) and the background."""
        k = len(model.mu)
        sig = np.log(np.sqrt(np.exp(2 * model.log_sigma) + extra_sigma**2))
        params, active = _padded(model.mu, sig, model.log_weight, model.tau, model.rho)
        wide = (0.01, 100.0)  # evaluation only: no clipping of the widened sigma
        comp, log_bg = _grid_logpdf(params, jnp.asarray(grid, jnp.float32), active, wide)
        return np.asarray(comp, np.float64)[:, :k], float(log_bg) - float(self.log_span)


def _insertion_candidates(fitter: _Fitter, model: Mixture, how_many: int = 3):
    """Where the data exceed the fitted density most (a fine KDE against the model smoothed alike)."""
    h = 0.5
    grid = fitter.grid()
    observed = np.asarray(kde(fitter.samples, grid, h), np.float64)
    comp, log_bg = fitter.log_parts(model, grid, extra_sigma=h)
    expected = np.exp(comp).sum(axis=1) + np.exp(log_bg)
    excess = (observed - expected) * fitter.n * h * math.sqrt(2 * math.pi)  # ~ queries under one kernel
    picks = []
    order = np.argsort(-excess)
    for i in order:
        if excess[i] < fitter.min_count / 2 or len(picks) >= how_many:
            break
        if all(abs(grid[i] - p) > 1.5 for p, _ in picks) and all(abs(grid[i] - m) > 1.0 for m in model.mu):
            picks.append((float(grid[i]), float(excess[i])))
    return picks


def _counts(model: Mixture, n: int) -> np.ndarray:
    return np.exp(model.log_weight[:-1]) * n


def refine(x: np.ndarray, centers: list[float], spread: float, min_count: int):
    """Greedy BIC search from the KDE's hump centres (log-times, `spread` the pooled noise spread).
    Returns (boundaries in log-time units, the fitted Mixture)."""
    center, scale = float(np.median(x)), spread
    u = ((x - center) / scale).astype(np.float32)
    fitter = _Fitter(u, min_count)
    start = np.sort([(c - center) / scale for c in centers][:MAX_COMPONENTS])
    best = fitter.fit(start)

    def score(m: Mixture) -> float:
        valid = _counts(m, fitter.n).min() >= min_count and _dominates(fitter, m)
        return m.bic if valid else math.inf

    best_score = score(best)
    for _ in range(2 * MAX_COMPONENTS):
        scored = [(score(m), m) for m in fitter.moves(best)]
        if not scored:
            break
        top_score, top = min(scored, key=lambda t: t[0])
        if top_score >= best_score - 1e-6:
            break
        best_score, best = top_score, top
    return [center + scale * b for b in _boundaries(fitter, best)], best


def _dominates(fitter: _Fitter, model: Mixture) -> bool:
    """Every component must be the most likely exit somewhere near its centre (else it is invisible)."""
    grid = fitter.grid()
    comp, _ = fitter.log_parts(model, grid)
    winners = np.unique(np.argmax(comp, axis=1))
    return len(winners) == len(model.mu)


def _boundaries(fitter: _Fitter, model: Mixture) -> list[float]:
    """Between neighbouring centres, the first point where the later exit becomes the more likely."""
    grid = fitter.grid(8192)
    comp, _ = fitter.log_parts(model, grid)
    cuts = []
    for k in range(len(model.mu) - 1):
        between = (grid >= model.mu[k]) & (grid <= model.mu[k + 1])
        idx = np.flatnonzero(between & (comp[:, k + 1] > comp[:, k]))
        cuts.append(float(grid[idx[0]]) if idx.size else float(0.5 * (model.mu[k] + model.mu[k + 1])))
    return cuts
