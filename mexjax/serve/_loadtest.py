"""A short, bounded load test of a served victim: concurrent clients, requests/s and latency percentiles."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from mexjax.serve._codec import NPY, encode_npy


def load_test(
    url: str,
    images: np.ndarray,
    *,
    requests: int = 200,
    concurrency: int = 4,
    time_limit: float = 30.0,
    client_id: str = "load-test",
) -> dict:
    """Send up to `requests` one-image requests (cycling through `images`) from `concurrency`
    connections, stopping at `time_limit` seconds. Returns counts, requests/s and latency percentiles
    (ms) of the answered requests; any non-200 answer is counted in `errors` (by status)."""
    if requests < 1 or concurrency < 1 or time_limit <= 0:
        raise ValueError("need requests >= 1, concurrency >= 1 and time_limit > 0")
    if len(images) == 0:
        raise ValueError("need at least one image to send")
    bodies = [encode_npy(images[i : i + 1]) for i in range(min(len(images), requests))]
    return asyncio.run(_run(url, bodies, requests, concurrency, time_limit, client_id))


async def _run(url, bodies, requests, concurrency, time_limit, client_id) -> dict:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    sent = 0
    headers = {"X-Client-Id": client_id, "Content-Type": NPY}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    deadline = started + time_limit

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            response = await client.post("/v1/predict", content=body, headers=headers)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[response.status_code] = errors.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=max(time_limit, 10.0)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1e3
    pct = (lambda q: float(np.percentile(ms, q))) if ms.size else (lambda q: float("nan"))
    return {
        "requests": sent,
        "answered": int(ms.size),
        "errors": errors,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_per_s": ms.size / seconds,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }
