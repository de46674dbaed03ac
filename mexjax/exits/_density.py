"""The Gaussian kernel density of a sample in jax.numpy (exact, or binned + FFT) and its bandwidth rules.

Its own module because both the boundary finder (`_kde`) and the mixture refinement (`_mixture`) read
densities: neither has to import the other.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_SQRT_2PI = math.sqrt(2.0 * math.pi)


# method="binned": the grid reaches _TAIL bandwidths beyond the outermost samples (farther out the density is
# below n·exp(-_TAIL²/2) of its peak: 0 is returned) and holds at least _PER_BANDWIDTH steps per bandwidth.
# Linear binning and linear interpolation each change the density by at most (step/h)²/8 · max|f''| h², and
# |f''| <= 1.5 / h² x the peak density (sup_z |z² - 1| exp(-z²/2 (1 - 1/a)) sqrt(a) = 1.5 at a = 2.26), so
# the error stays below 0.38 / _PER_BANDWIDTH² ≈ 4e-5 of the peak (plus float32 round-off of the FFT).
_TAIL = 8.0
_PER_BANDWIDTH = 96
_MIN_GRID, _MAX_GRID = 1024, 1 << 22


@jax.jit
def _kde(samples, points, bandwidth):
    z = (points[:, None] - samples[None, :]) / bandwidth
    return jnp.sum(jnp.exp(-0.5 * z * z), axis=1) / (samples.shape[0] * bandwidth * _SQRT_2PI)


@functools.partial(jax.jit, static_argnames="size")
def _kde_binned(left, frac, at, weights, step, norm, *, size: int):
    """Linear binning of the samples (grid index `left`, fraction `frac` towards left + 1) onto `size`
    grid points `step` bandwidths apart, Gaussian convolution by FFT, then each point's density from
    its two grid neighbours `at`, `at` + 1 with `weights` [m, 2]."""
    counts = jnp.zeros(size, jnp.float32).at[left].add(1 - frac).at[left + 1].add(frac)
    # the kernel at every offset -(size-1)..size-1, laid out circularly over 2·size: no wrap-around
    offset = jnp.arange(2 * size, dtype=jnp.int32)
    z = jnp.where(offset < size, offset, offset - 2 * size).astype(jnp.float32) * step
    kernel = jnp.exp(-0.5 * z * z)
    grid = jnp.fft.irfft(jnp.fft.rfft(counts, 2 * size) * jnp.fft.rfft(kernel), 2 * size)[:size]
    grid = jnp.maximum(grid, 0) * norm  # round-off can dip below 0 where the density is ~0
    return grid[at] * weights[:, 0] + grid[at + 1] * weights[:, 1]


def _grid_position(values: np.ndarray, lo: float, step: float, size: int):
    """Grid cell (left index) and fraction of the way to the next grid point, in float64."""
    pos = (values.astype(np.float64) - lo) / step
    left = np.clip(np.floor(np.nan_to_num(pos)), 0, size - 2)
    return left.astype(np.int32), pos - left


def _binned(samples: np.ndarray, points: np.ndarray, h: float):
    """method="binned" (see `kde`); None when the grid would exceed _MAX_GRID points."""
    lo = float(samples.min()) - _TAIL * h
    span = float(samples.max()) + _TAIL * h - lo
    need = span / h * _PER_BANDWIDTH + 1
    if not need <= _MAX_GRID:  # also NaN / infinite samples: the exact sum reports them
        return None
    size = max(_MIN_GRID, 1 << math.ceil(math.log2(need)))  # powers of two: few compilations
    step = span / (size - 1)
    left, frac = _grid_position(samples, lo, step, size)
    at, t = _grid_position(points, lo, step, size)
    inside = (t >= 0) & (t <= 1)  # points beyond the grid: density 0
    weights = np.stack([np.where(inside, 1 - t, 0), np.where(inside, t, 0)], axis=1).astype(np.float32)
    weights[np.isnan(t)] = np.nan  # NaN points stay NaN, as in the exact sum
    return _kde_binned(
        jnp.asarray(left),
        jnp.asarray(frac, jnp.float32),
        jnp.asarray(at),
        jnp.asarray(weights),
        jnp.float32(step / h),
        jnp.float32(1.0 / (samples.size * h * _SQRT_2PI)),
        size=size,
    )


def kde(
    samples, points, bandwidth: float | str = "scott", *, method: str = "exact", chunk: int = 4096
) -> jax.Array:
    """Gaussian kernel density of `samples` f32[n] evaluated at `points` f32[m] -> f32[m].

    bandwidth: a positive float, or "scott" / "silverman" (rules of thumb on the samples' spread).
    method: "exact" (the reference): the sum over every sample, points evaluated in chunks so memory
      stays O(chunk · n). "binned": linear binning onto a grid of >= 96 points per bandwidth, FFT
      convolution and linear interpolation, O(n + m + G log G) for G grid points; it differs from the
      exact sum by less than 1e-4 of the peak density and is 0 farther than 8 bandwidths from every
      sample. Grids are powers of two (a new grid size compiles once); if the samples span more than
      43,000 bandwidths (a grid above 2^22 points) the exact sum is used instead.
    """
    if method not in ("exact", "binned"):
        raise ValueError(f"method must be 'exact' or 'binned'; got {method!r}")
    host = np.asarray(samples, np.float32).reshape(-1)
    if host.size == 0:
        raise ValueError("kde needs at least one sample")
    bw = rule_of_thumb(host, bandwidth)
    if method == "binned":
        out = _binned(host, np.asarray(points, np.float32).reshape(-1), bw)
        if out is not None:
            return out
    samples = jnp.asarray(host)
    points = jnp.asarray(points, jnp.float32).reshape(-1)
    h = jnp.asarray(bw, jnp.float32)
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
