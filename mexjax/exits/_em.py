"""A mixture of exits of one noise shape, fitted by expectation-maximization (EM) in JAX.

On standardized log-times u, exit k is
    f_k(u) = (1 - rho) N(u; mu_k, sigma_k) + rho EMG(u; mu_k, sigma_k, 1 / lam)
a Gaussian core and a share rho of answers slowed by an exponential delay of mean 1 / lam (the shape
the fastest of a few noisy passes leaves), rho and lam shared by every exit, plus a uniform
background over the range for scattered outliers. The EMG's delay is a latent variable: given u, it
is a normal truncated at 0, so every EM update is in closed form. The samples are binned finely and
only the bins that hold samples are kept (padded to a power of two), and `fit_many` fits a batch of
starts at once (`jax.vmap`): one compiled EM loop serves every step of a model search.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, logsumexp

MAX_COMPONENTS = 12
ITERATIONS = 40
# Compiled shapes: every fit pads its samples' bins to a power of two (at least MIN_BINS), its batch of
# starts to one of BATCHES (then multiples of the last), and a density on a grid is computed in chunks of
# GRID_CHUNK points over all MAX_COMPONENTS: a model search compiles a handful of programs, not one per
# number of exits, grid and batch.
MIN_BINS = 256
BATCHES = (1, 8, 32)
GRID_CHUNK = 4096
SIGMA_RANGE = (0.15, 3.0)  # standardized units: the pooled noise spread is 1
TAU_RANGE = (0.05, 20.0)
RHO_RANGE = (1e-3, 0.6)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A fitted mixture in standardized log-time units."""

    mu: np.ndarray  # f32[K] sorted
    sigma: np.ndarray  # f32[K]
    weight: np.ndarray  # f32[K + 1], the last one the background's
    tau: float
    rho: float
    nll: float  # negative log-likelihood of the samples
    bic: float  # 2 nll + the penalty of a Bayesian information criterion (see `Fitter.fit_many`)
    icl: float  # bic + 2 x the entropy of the samples' exit assignment (integrated completed
    # likelihood), counted on the exits' cores: two exits whose cores overlap pay for every sample
    # they share


def _log_parts(u, mu, sigma, log_w, lam, rho, hi):
    """log of (core, tail) x exit and the background at points u: f32[N, K], f32[N, K], f32[N].

    The background holds each exit's scattered slowed answers: for exit k, uniform from four noise
    spreads below its centre up to the slowest time `hi`, weighted by the exit's share. Noise slows
    answers, it does not make them faster, so a query well below an exit is not that exit's outlier:
    only an exit of its own explains it well (the background there is e^-12 times thinner)."""
    z = (u[:, None] - mu[None, :]) / sigma[None, :]
    log_core = -0.5 * z**2 - jnp.log(sigma)[None, :] - _LOG_SQRT_2PI
    ls = lam * sigma[None, :]
    log_tail = jnp.log(lam) + lam * (mu[None, :] - u[:, None]) + 0.5 * ls**2 + log_ndtr(z - ls)
    core = jnp.log1p(-rho) + log_core + log_w[None, :-1]
    tail = jnp.log(rho) + log_tail + log_w[None, :-1]
    share = jax.nn.softmax(log_w[:-1])  # the exits' shares (inactive ones: 0)
    start = mu - 4.0
    reach = (u[:, None] >= start[None, :]).astype(u.dtype) / jnp.maximum(hi - start, 1e-3)[None, :]
    floor = jnp.exp(-12.0) / jnp.maximum(hi - jnp.min(jnp.where(share > 0, start, jnp.inf)), 1e-3)
    log_bg = log_w[-1] + jnp.log(jnp.maximum(reach @ share, floor))
    return core, tail, log_bg


def _em(params, active, u, counts, hi):
    """ITERATIONS EM steps from `params` (mu, sigma, log_w [K + 1], lam, rho); inactive exits have
    weight 0. Returns the fitted parameters, the negative log-likelihood and the entropy of the
    samples' assignment to the exits' cores under the fitted model."""

    def log_w_of(w):
        return jnp.where(
            jnp.concatenate([active, jnp.array([True])]), jnp.log(jnp.maximum(w, 1e-30)), -jnp.inf
        )

    def step(p, _):
        mu, sigma, w, lam, rho = p
        core, tail, bg = _log_parts(u, mu, sigma, log_w_of(w), lam, rho, hi)
        total = logsumexp(jnp.concatenate([core, tail, bg[:, None]], axis=1), axis=1)
        r_core = jnp.exp(core - total[:, None]) * counts[:, None]
        r_tail = jnp.exp(tail - total[:, None]) * counts[:, None]
        r_bg = jnp.exp(bg - total) * counts
        # the latent delay of a tail answer: N(m, sigma) truncated to >= 0, m = u - mu - lam sigma^2
        m = u[:, None] - mu[None, :] - lam * sigma[None, :] ** 2
        a = m / sigma[None, :]
        h = jnp.exp(-0.5 * a**2 - _LOG_SQRT_2PI - log_ndtr(a))  # phi(a) / Phi(a)
        e1 = m + sigma[None, :] * h
        e2 = e1**2 + sigma[None, :] ** 2 * (1 - a * h - h**2)
        e1, e2 = jnp.maximum(e1, 0.0), jnp.maximum(e2, 0.0)
        per_exit = r_core.sum(0) + r_tail.sum(0)
        safe = jnp.maximum(per_exit, 1e-9)
        new_mu = (r_core * u[:, None] + r_tail * (u[:, None] - e1)).sum(0) / safe
        d = u[:, None] - new_mu[None, :]
        var = (r_core * d**2 + r_tail * (d**2 - 2 * d * e1 + e2)).sum(0) / safe
        new_sigma = jnp.clip(jnp.sqrt(jnp.maximum(var, 1e-12)), *SIGMA_RANGE)
        tail_total = r_tail.sum()
        new_lam = jnp.clip(
            tail_total / jnp.maximum((r_tail * e1).sum(), 1e-9), 1 / TAU_RANGE[1], 1 / TAU_RANGE[0]
        )
        new_rho = jnp.clip(tail_total / jnp.maximum(per_exit.sum(), 1e-9), *RHO_RANGE)
        new_w = jnp.concatenate([per_exit, r_bg.sum()[None]]) / counts.sum()
        new_mu = jnp.where(active, new_mu, mu)
        new_sigma = jnp.where(active, new_sigma, sigma)
        return (new_mu, new_sigma, new_w, new_lam, new_rho), None

    p, _ = jax.lax.scan(step, params, None, length=ITERATIONS)
    mu, sigma, w, lam, rho = p
    core, tail, bg = _log_parts(u, mu, sigma, log_w_of(w), lam, rho, hi)
    total = logsumexp(jnp.concatenate([core, tail, bg[:, None]], axis=1), axis=1)
    # which exit's core a time belongs to, weighted by the chance that it is a core (undisturbed)
    # time at all: slowed answers are ambiguous by nature, two exits are one if their cores overlap
    core_total = logsumexp(core, axis=1)
    post = jnp.exp(core - core_total[:, None])
    ambiguity = -jnp.sum(jnp.where(post > 0, post * (core - core_total[:, None]), 0.0), axis=1)
    entropy = jnp.sum(counts * jnp.exp(core_total - total) * ambiguity)
    return p, -jnp.sum(counts * total), entropy


@jax.jit
def _em_many(params, active, u, counts, hi):
    return jax.vmap(_em, in_axes=(0, 0, None, None, None))(params, active, u, counts, hi)


def _batch_bucket(n: int) -> int:
    """The compiled batch size that holds n starts (BATCHES, then multiples of the last)."""
    for size in BATCHES:
        if n <= size:
            return size
    return BATCHES[-1] * math.ceil(n / BATCHES[-1])


@jax.jit
def _grid_parts(mu, sigma, log_w, lam, rho, hi, grid):
    core, tail, bg = _log_parts(grid, mu, sigma, log_w, lam, rho, hi)
    return core, jnp.logaddexp(core, tail), bg


class Fitter:
    """Fits mixtures to one sample of standardized log-times (binned once)."""

    def __init__(self, u: np.ndarray):
        self.samples = u
        self.n = u.size
        self.lo, self.hi = float(u.min()), float(u.max())
        bins = int(min(max((self.hi - self.lo) * 16, 1024), 1 << 16))  # bins of <= 1/16 of the spread
        counts, edges = np.histogram(u, bins=bins, range=(self.lo, self.hi + 1e-6))
        full = np.flatnonzero(counts)
        size = 1 << math.ceil(math.log2(max(full.size, MIN_BINS)))
        centres = 0.5 * (edges[:-1] + edges[1:])
        self.u = jnp.asarray(np.pad(centres[full], (0, size - full.size), mode="edge"), jnp.float32)
        self.counts = jnp.asarray(np.pad(counts[full], (0, size - full.size)), jnp.float32)
        self.hi_u = jnp.float32(self.hi)

    def fit_many(self, starts: list[tuple]) -> list[Mixture]:
        """Fit every start (mu[K], sigma[K], weight[K + 1], tau, rho) in one batched EM call."""
        mus, sigmas, ws, lams, rhos, actives = [], [], [], [], [], []
        for mu, sigma, weight, tau, rho in starts:
            k = len(mu)
            pad = MAX_COMPONENTS - k
            mus.append(np.pad(mu, (0, pad)))
            sigmas.append(np.pad(sigma, (0, pad), constant_values=1.0))
            ws.append(np.concatenate([np.pad(weight[:k], (0, pad)), weight[k:]]))
            lams.append(1.0 / tau)
            rhos.append(rho)
            actives.append(np.arange(MAX_COMPONENTS) < k)
        batch = _batch_bucket(len(starts))
        fill = batch - len(starts)

        def stack(xs):
            arr = np.asarray(xs, np.float32) if not isinstance(xs[0], np.ndarray) else np.stack(xs)
            return jnp.asarray(np.concatenate([arr, np.repeat(arr[-1:], fill, axis=0)]))

        params = (stack(mus), stack(sigmas), stack(ws), stack(lams), stack(rhos))
        active = jnp.asarray(np.concatenate([np.stack(actives), np.repeat(actives[-1][None], fill, 0)]))
        (mu, sigma, w, lam, rho), nll, entropy = _em_many(params, active, self.u, self.counts, self.hi_u)
        mu, sigma, w = np.asarray(mu), np.asarray(sigma), np.asarray(w)
        lam, rho, nll, entropy = np.asarray(lam), np.asarray(rho), np.asarray(nll), np.asarray(entropy)
        out = []
        for i, start in enumerate(starts):
            k = len(start[0])
            order = np.argsort(mu[i, :k])
            # penalty: ln N for every free parameter (centre, spread and weight of each exit; lam,
            # rho): an exit must earn its keep against the whole sample
            penalty = (3 * k + 2) * math.log(self.n)
            out.append(
                Mixture(
                    mu=mu[i, :k][order],
                    sigma=sigma[i, :k][order],
                    weight=np.concatenate([w[i, :k][order], w[i, -1:]]),
                    tau=float(1.0 / lam[i]),
                    rho=float(rho[i]),
                    nll=float(nll[i]),
                    bic=2 * float(nll[i]) + penalty,
                    icl=2 * float(nll[i]) + penalty + 2 * float(entropy[i]),
                )
            )
        return out

    def start(self, mu) -> tuple:
        k = len(mu)
        return (np.asarray(mu, np.float32), np.ones(k), np.append(np.full(k, 0.98 / k), 0.02), 1.0, 0.2)

    def grid(self, points: int = 4096) -> np.ndarray:
        return np.linspace(self.lo - 1.0, self.hi + 1.0, points)

    def log_parts(self, m: Mixture, grid: np.ndarray, with_core: bool = False):
        """log(w_k f_k) on the grid f64[G, K] and the background's log density f64[G] (and first the
        cores' log(w_k (1 - rho) N_k) with_core)."""
        k = len(m.mu)
        pad = MAX_COMPONENTS - k
        log_w = np.log(np.maximum(m.weight, 1e-30))
        params = (
            jnp.asarray(np.pad(m.mu, (0, pad)), jnp.float32),
            jnp.asarray(np.pad(m.sigma, (0, pad), constant_values=1.0), jnp.float32),
            jnp.asarray(np.concatenate([log_w[:k], np.full(pad, -np.inf), log_w[k:]]), jnp.float32),
            jnp.float32(1.0 / m.tau),
            jnp.float32(m.rho),
            self.hi_u,
        )
        grid = np.asarray(grid, np.float64)
        parts = [[], [], []]
        for start in range(0, grid.size, GRID_CHUNK):
            chunk = grid[start : start + GRID_CHUNK]
            padded = np.pad(chunk, (0, GRID_CHUNK - chunk.size), mode="edge")
            for part, value in zip(
                parts, _grid_parts(*params, jnp.asarray(padded, jnp.float32)), strict=True
            ):
                part.append(np.asarray(value, np.float64)[: chunk.size])
        core, comp, bg = (np.concatenate(part) for part in parts)
        out = (comp[:, :k], bg)
        return (core[:, :k], *out) if with_core else out

    def expected_counts(self, m: Mixture) -> np.ndarray:
        return m.weight[:-1] * self.n

    def dominates(self, m: Mixture) -> bool:
        """Every exit is the most likely one on a single stretch of the samples' range, and the
        stretches come in the order of the exits: the time axis cuts into one interval per exit (two
        components on one centre, a narrow and a wide, would be one exit fitted twice)."""
        grid = np.linspace(self.lo, self.hi, 4096)
        comp, _ = self.log_parts(m, grid)
        winners = np.argmax(comp, axis=1)
        runs = winners[np.concatenate([[True], np.diff(winners) != 0])]
        return len(runs) == len(m.mu) and bool(np.all(np.diff(runs) > 0))

    def boundaries(self, m: Mixture) -> list[float]:
        """Between neighbouring centres, the first point where the later exit's time distribution
        becomes the higher, each exit taken as equally likely: the cut that balances the two exits'
        errors (sparse early exits are what the attack must not lose to a crowded neighbour)."""
        grid = self.grid(16384)
        comp, _ = self.log_parts(m, grid)
        comp = comp - np.log(np.maximum(m.weight[:-1], 1e-30))[None, :]
        cuts = []
        for k in range(len(m.mu) - 1):
            between = (grid >= m.mu[k]) & (grid <= m.mu[k + 1])
            idx = np.flatnonzero(between & (comp[:, k + 1] > comp[:, k]))
            cuts.append(float(grid[idx[0]]) if idx.size else float(0.5 * (m.mu[k] + m.mu[k + 1])))
        return cuts
