"""Server options as plain data: limits, the per-client budget, and the timing-leak countermeasure.

An answer's time tells an attacker which exit the image took (METHODS §3 step 2). Each countermeasure
decides *when* an answer leaves the server, given when its computation started and ended; the
functions here are pure (the random draw is an argument), so the server and the tests share them.

What each costs the victim (METHODS §7):
- "constant": every answer waits until `n x full_time` after its computation started (the full
  network's batch-1 time, measured at start-up unless given). Early exit still saves the FLOPs
  (energy, and compute for other clients while an answer waits), but no answer is faster than the
  full network: the latency gain of early exit is gone, and clients that wait for each answer get
  fewer answers per second. An answer whose computation overruns the pad (a noisy machine) leaves
  late and leaks.
- "uniform" / "exponential": a random delay after the computation, uniform on [0, delay] or exponential
  with mean `delay`. Costs delay/2 or delay of latency on average; the exit still shows in the
  mean, so it blurs but does not close the channel (more timing passes average it away).
- "batch": answers leave only at the end of a time slot of `window` seconds (requests arriving in one
  slot are computed at its end and released one slot later). Costs between one and two windows of
  latency; when the computation fits in a slot every answer takes the same number of slots.
"""

from __future__ import annotations

import dataclasses
import math

KINDS = ("none", "constant", "uniform", "exponential", "batch")


@dataclasses.dataclass(frozen=True)
class Countermeasure:
    """kind: one of KINDS; delay: seconds (uniform: the maximum, exponential: the mean);
    window: the slot length in seconds ("batch"); full_time: the pad of "constant" in seconds per image
    (None: measured at start-up as the `pad_quantile` of `pad_runs` full-network passes)."""

    kind: str = "none"
    delay: float = 0.0
    window: float = 0.0
    full_time: float | None = None
    pad_quantile: float = 0.99
    pad_runs: int = 50

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"countermeasure must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.kind in ("uniform", "exponential") and not self.delay > 0:
            raise ValueError(f"a {self.kind} delay needs delay > 0 seconds; got {self.delay}")
        if self.kind == "batch" and not self.window > 0:
            raise ValueError(f"batch answers need a slot window > 0 seconds; got {self.window}")
        if self.full_time is not None and not self.full_time > 0:
            raise ValueError(f"full_time must be > 0 seconds (or None to measure it); got {self.full_time}")
        for name in ("delay", "window", "full_time"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds; got {value}")
        if not 0 < self.pad_quantile <= 1 or self.pad_runs < 1:
            raise ValueError("need 0 < pad_quantile <= 1 and pad_runs >= 1")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """budget: images each client may send (repeats count); max_batch: images per request;
    max_body_bytes: request bodies above it are refused (413) before they are read in full."""

    budget: int = 10_000
    max_batch: int = 64
    max_body_bytes: int = 4 * 2**20
    countermeasure: Countermeasure = Countermeasure()
    seed: int = 0  # of the random delays
    read_timeout: float = 30.0  # seconds a client may take to send a request's body (then 408)
    max_clients: int = 100_000  # client ids whose budgets are kept; a new one beyond them gets 503

    def __post_init__(self):
        if not isinstance(self.budget, int) or self.budget < 0:
            raise ValueError(f"budget must be a non-negative int; got {self.budget!r}")
        if self.max_batch < 1 or self.max_body_bytes < 1024:
            raise ValueError("need max_batch >= 1 and max_body_bytes >= 1024")
        if not (math.isfinite(self.read_timeout) and self.read_timeout > 0):
            raise ValueError(f"read_timeout must be a finite number of seconds > 0; got {self.read_timeout}")
        if not isinstance(self.max_clients, int) or self.max_clients < 1:
            raise ValueError(f"max_clients must be a positive int; got {self.max_clients!r}")


def release_time(cm: Countermeasure, started: float, finished: float, images: int, draw: float) -> float:
    """When an answer computed from `started` to `finished` (seconds, one clock) may leave.

    `draw` is a uniform random number in [0, 1) (used by the random delays only). Not for "batch",
    whose answers leave at slot ends (`slot_end`)."""
    if not 0 <= draw < 1:
        raise ValueError(f"draw must be in [0, 1); got {draw}")
    if cm.kind == "none":
        return finished
    if cm.kind == "constant":
        if cm.full_time is None:
            raise ValueError("the constant-time pad is not known yet: measure it (full_time) first")
        return max(finished, started + images * cm.full_time)
    if cm.kind == "uniform":
        return finished + cm.delay * draw
    if cm.kind == "exponential":
        return finished - cm.delay * math.log1p(-draw)
    raise ValueError(f"{cm.kind!r} answers leave at slot ends: use slot_end")


def slot_end(now: float, window: float) -> float:
    """The first slot boundary (a multiple of `window`) strictly after `now`."""
    if not window > 0:
        raise ValueError(f"window must be > 0; got {window}")
    return (math.floor(now / window) + 1) * window
