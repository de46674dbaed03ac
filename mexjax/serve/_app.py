"""The served victim: an ASGI app (Starlette) answering images with real early exit per request.

Endpoints:
  GET  /health       status, input shape, classes, output kind and request limits (what API docs say)
  GET  /v1/budget    the calling client's budget, used and remaining queries
  POST /v1/predict   images in (see `_codec`), {"probabilities": [[...]]} or {"labels": [...]} out
Every client names itself in an `X-Client-Id` header; each image it sends costs one query of its
budget (429 once spent). Bad requests get a 4xx JSON {"error": message}; the server keeps serving.
It must never reveal the exit an image took: not in the body, not in a header, not in timing
metadata, not in the answer's size (`answer_body`); the answer's time is what the countermeasures in
`_countermeasures` shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mexjax import oracle
from mexjax.serve._codec import IMAGE_TYPES, NPY, RequestError, decode
from mexjax.serve._countermeasures import Countermeasure, ServeConfig, release_time, slot_end

CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BUDGET_HEADER = "X-Budget-Remaining"


class Service:
    """The victim behind the endpoints: answers on one worker thread (one image at a time, as one
    accelerator would), per-client budgets, and the countermeasure's release times."""

    def __init__(self, victim: oracle.Oracle, config: ServeConfig):
        # the served network answers through an in-process oracle (same early exit, same outputs, its
        # output defense if any); its own budget caps all clients together, `config.budget` each one
        self._oracle = victim
        owned = oracle.deployed(victim)  # the owner's side: it knows its network
        net, variables = owned.net, owned.variables
        self.net = net
        self.config = config
        self.used: dict[str, int] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mexjax-serve")
        self._rng = np.random.default_rng(config.seed)
        self._pending: list = []  # "batch": (images, future) waiting for the next slot
        self._slot = None
        if victim.timing != "measured":
            raise ValueError("a served victim runs for real: give it an Oracle with timing='measured'")
        cm = config.countermeasure
        if cm.kind == "constant" and cm.full_time is None:
            cm = dataclasses.replace(cm, full_time=self._full_time(net, variables, cm))
            self.config = dataclasses.replace(config, countermeasure=cm)

    @staticmethod
    def _full_time(net, variables, cm: Countermeasure) -> float:
        """The full network's batch-1 time (the `pad_quantile` of `pad_runs` passes), in seconds."""
        runner = net.runner(tile=1)
        row = np.zeros((1, *net.input_shape), np.float32)
        never = np.full(net.num_exits - 1, np.inf, np.float32)  # no early exit: every stage runs
        runner.early_exit_unchecked(variables, row, never)
        times = []
        for _ in range(cm.pad_runs):
            start = time.perf_counter()
            runner.early_exit_unchecked(variables, row, never)
            times.append(time.perf_counter() - start)
        return float(np.quantile(times, cm.pad_quantile))

    def warmup(self) -> None:
        """Compile every stage before the first client (no client's query and none of the service's
        total budget is spent)."""
        self._oracle.warmup()

    def info(self) -> dict:
        return {
            "status": "ok",
            "input_shape": list(self.net.input_shape),
            "num_classes": self.net.num_classes,
            "output": self._oracle.output,
            "max_batch": self.config.max_batch,
            "max_body_bytes": self.config.max_body_bytes,
            "formats": [NPY, *IMAGE_TYPES],
        }

    def budget(self, client: str) -> dict:
        used = self.used.get(client, 0)
        return {"budget": self.config.budget, "used": used, "remaining": self.config.budget - used}

    def charge(self, client: str, n: int) -> None:
        """Reserve n queries of the client's budget (before the work: parallel requests cannot overspend)."""
        if client not in self.used and len(self.used) >= self.config.max_clients:
            # budgets are never forgotten (forgetting one would hand its client a fresh budget)
            raise RequestError(
                503,
                f"this server keeps the budgets of at most {self.config.max_clients} clients and has "
                "no room for a new one: try again later or ask the operator",
            )
        used = self.used.get(client, 0)
        if used + n > self.config.budget:
            raise RequestError(
                429,
                f"query budget exhausted for client {client!r}: {self.config.budget} queries allowed, "
                f"{used} used; this request of {n} images needs {n}",
            )
        self.used[client] = used + n

    def _compute(self, images: np.ndarray):
        started = time.monotonic()  # the event loop's clock
        try:
            outputs = self._oracle.query(images).outputs  # the first call compiles (warm-up, untimed)
        except oracle.BudgetExhausted as err:
            raise RequestError(429, f"the service's total query budget is spent: {err}") from err
        return outputs, started, time.monotonic()

    async def answer(self, images: np.ndarray) -> np.ndarray:
        """The outputs for `images`, released when the countermeasure allows."""
        cm = self.config.countermeasure
        if cm.kind == "batch":
            return await self._answer_in_slot(images)
        loop = asyncio.get_running_loop()
        outputs, started, finished = await loop.run_in_executor(self._worker, self._compute, images)
        release = release_time(cm, started, finished, len(images), float(self._rng.random()))
        await asyncio.sleep(max(0.0, release - loop.time()))
        return outputs

    async def _answer_in_slot(self, images: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((images, future))
        if self._slot is None:  # the first request of this slot schedules it
            self._slot = loop.create_task(
                self._run_slot(slot_end(loop.time(), self.config.countermeasure.window))
            )
        return await future

    async def _run_slot(self, boundary: float) -> None:
        loop = asyncio.get_running_loop()
        window = self.config.countermeasure.window
        await asyncio.sleep(max(0.0, boundary - loop.time()))
        batch, self._pending, self._slot = self._pending, [], None
        requests = [im for im, _ in batch]  # answered one by one: their dtypes may differ
        try:
            outputs, finished = await loop.run_in_executor(self._worker, self._compute_all, requests)
        except Exception as err:  # every waiting request learns of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        await asyncio.sleep(max(0.0, slot_end(finished, window) - loop.time()))
        for (_, future), answer in zip(batch, outputs, strict=True):
            if not future.done():  # a client that went away cancelled its future
                future.set_result(answer)

    def _compute_all(self, requests: list[np.ndarray]):
        outputs = [self._compute(images)[0] for images in requests]
        return outputs, time.monotonic()

    def close(self) -> None:
        self._worker.shutdown(wait=True)


def create_app(victim: oracle.Oracle, config: ServeConfig | None = None) -> Starlette:
    """A Starlette app serving `victim` (an in-process oracle with measured timing) to many clients.

    The victim is compiled, and for "constant" its pad measured, when this returns."""
    service = Service(victim, config or ServeConfig())
    service.warmup()
    net = service.net

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(service.info())

    async def budget(request: Request) -> JSONResponse:
        return JSONResponse(service.budget(_client(request)))

    async def predict(request: Request) -> JSONResponse:
        client = _client(request)
        try:  # a client that stalls mid-body must not hold a connection forever
            body = await asyncio.wait_for(
                _read_body(request, service.config.max_body_bytes), service.config.read_timeout
            )
        except TimeoutError:
            raise RequestError(
                408, f"the request body did not arrive within {service.config.read_timeout} s: send it whole"
            ) from None
        images = decode(
            body, request.headers.get("content-type", ""), net.input_shape, service.config.max_batch
        )
        service.charge(client, len(images))
        outputs = await service.answer(images)
        remaining = str(service.budget(client)["remaining"])
        body = answer_body(outputs, victim.output, net.num_classes)
        return Response(body, media_type="application/json", headers={BUDGET_HEADER: remaining})

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/budget", budget, methods=["GET"]),
            Route("/v1/predict", predict, methods=["POST"]),
        ],
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.service = service
    return app


def answer_body(outputs: np.ndarray, output: str, num_classes: int) -> bytes:
    """The JSON answer, its length fixed by the number of answers alone: a confident (early) answer
    printed as "1.0" would otherwise be shorter than an uncertain one, and the size would leak.

    Probabilities as %.8e (9 significant digits: float32 exactly); labels padded with spaces."""
    if output == "labels":
        width = len(str(num_classes - 1))
        return ('{"labels": [' + ",".join(f"{int(v):{width}d}" for v in outputs) + "]}").encode()
    rows = ("[" + ",".join(f"{float(v):.8e}" for v in row) + "]" for row in outputs)
    return ('{"probabilities": [' + ",".join(rows) + "]}").encode()


def _client(request: Request) -> str:
    client = request.headers.get("x-client-id", "")
    if not CLIENT_ID.match(client):
        raise RequestError(
            400, "send an X-Client-Id header naming the client (1-64 letters, digits, '.', '_' or '-')"
        )
    return client


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise RequestError(400, f"the Content-Length header {length!r} is not a byte count")
    if length is not None and int(length) > limit:
        raise RequestError(413, f"the body is larger than the {limit} bytes this server accepts per request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(
                413, f"the body is larger than the {limit} bytes this server accepts per request"
            )
    if not body:
        raise RequestError(400, "the body is empty: send images (see GET /health for the formats)")
    return bytes(body)


async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(err)}, status_code=err.status)


async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    return JSONResponse(
        {"error": f"{err.detail}: {request.method} {request.url.path}"}, status_code=err.status_code
    )


async def _server_error(request: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"error": f"internal error ({type(err).__name__})"}, status_code=500)
