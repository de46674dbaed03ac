"""Wall-clock timing shared by every benchmark script. Framework-free, so the PyTorch reference
(`torch_reference.py`, run without JAX) times its work the same way."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, warmup: int = 0) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed ones (compilation, caches).
    `fn` must return only when its work is done (block on asynchronous results inside it)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
