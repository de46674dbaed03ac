"""The attacker's oracle over HTTP: the same interface as `oracle.Oracle`, timed by round trip.

`RemoteOracle(url).query(images, passes=...)` sends one image per request on a kept-alive connection
and measures each request's round trip (`time.perf_counter` around the POST, the answer read in
full); bodies are encoded before the clock starts. Results say timing="network". Every attack that
takes an oracle (`attacks.steal.timing_attack`, `knockoff`, ...) runs unchanged against a served victim.
It knows only what a client can know: /health (input shape, classes, output kind) and its budget.
"""

from __future__ import annotations

import time

import httpx
import numpy as np

from mexjax.oracle import BudgetExhausted, QueryResult, check_passes, measurement_order
from mexjax.serve._app import BUDGET_HEADER
from mexjax.serve._codec import NPY, check_images, encode_npy


class RemoteError(RuntimeError):
    """The server refused a request (other than for budget): `status` and its message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"the server answered {status}: {message}")
        self.status = status


class RemoteOracle:
    """A served victim at `url`, queried as client `client_id` (see the module docstring)."""

    def __init__(self, url: str, *, client_id: str = "attacker", timeout: float = 60.0, seed: int = 0):
        self._orders = np.random.default_rng(seed)  # the order of each timing pass's requests
        self._http = httpx.Client(base_url=url, timeout=timeout, headers={"X-Client-Id": client_id})
        try:
            info = self._get("/health")
            budget = self._get("/v1/budget")
        except BaseException:
            self._http.close()
            raise
        self._input_shape = tuple(info["input_shape"])
        self._num_classes = int(info["num_classes"])
        self.output = info["output"]
        self.max_batch = int(info["max_batch"])
        self.budget = int(budget["budget"])
        self.used = int(budget["used"])
        self.timing = "network"
        self.url = url

    @property
    def input_shape(self):
        return self._input_shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _get(self, path: str) -> dict:
        response = self._http.get(path)
        if response.status_code != 200:
            raise RemoteError(response.status_code, _message(response))
        return response.json()

    def query(self, images, *, passes: int = 1, timed: bool = True) -> QueryResult:
        """Answer images [N, H, W, C] (uint8, or float32 in [0, 1]); each is timed `passes` times
        (round trips; the fastest is kept). Costs N x passes queries; raises BudgetExhausted (with the
        answers it could give) when the budget does not cover the request, as `oracle.Oracle` does.
        timed=False sends up to max_batch images per request (runtimes NaN)."""
        passes = check_passes(passes)
        images = np.asarray(images)
        n = len(images)
        if n:
            images = check_images(images, self._input_shape, max_batch=n)  # clear errors before sending
        affordable = min(n, max(self.remaining, 0) // passes)
        try:
            answered = (
                self._timed(images[:affordable], passes) if timed else self._untimed(images[:affordable])
            )
        except BudgetExhausted as stop:  # the server's count ran out first (another client with this id)
            affordable, answered = -1, stop.answered
        if affordable < n:
            raise BudgetExhausted(
                f"query budget exhausted: {self.budget} queries allowed, {self.used} used; answered "
                f"{len(answered)} of {n} images ({passes} timing passes each). The answers so far are in "
                "this exception's `answered`.",
                answered,
            )
        return answered

    def _post(self, body: bytes) -> httpx.Response:
        return self._http.post("/v1/predict", content=body, headers={"Content-Type": NPY})

    def _read(self, response: httpx.Response) -> np.ndarray:
        if BUDGET_HEADER in response.headers:
            self.used = self.budget - int(response.headers[BUDGET_HEADER])
        if response.status_code != 200:
            raise RemoteError(response.status_code, _message(response))
        payload = response.json()
        if self.output == "labels":
            return np.asarray(payload["labels"], np.int32)
        return np.asarray(payload["probabilities"], np.float32).reshape(-1, self._num_classes)

    def _empty(self, n: int) -> np.ndarray:
        shape = (n,) if self.output == "labels" else (n, self._num_classes)
        return np.zeros(shape, np.int32 if self.output == "labels" else np.float32)

    def _timed(self, images: np.ndarray, passes: int) -> QueryResult:
        n = len(images)
        bodies = [encode_npy(images[i : i + 1]) for i in range(n)]
        outputs, every = self._empty(n), np.zeros((passes, n))
        order = measurement_order(passes, n, self._orders)  # as the in-process oracle times them
        timed = np.zeros((passes, n), bool)
        for p in range(passes):
            for i in order[p]:
                start = time.perf_counter()
                response = self._post(bodies[i])
                elapsed = time.perf_counter() - start
                if response.status_code == 429:  # keep the first images timed in every pass
                    done = int(np.argmin(np.append(timed.all(axis=0), False)))
                    kept = every[:, :done]
                    result = QueryResult(
                        outputs[:done], kept.min(axis=0), passes, self.timing, self.output, kept
                    )
                    raise BudgetExhausted(_message(response), result)
                outputs[i] = self._read(response)[0]
                every[p, i] = elapsed
                timed[p, i] = True
        runtimes = every.min(axis=0) if n else np.zeros(0)
        return QueryResult(outputs, runtimes, passes, self.timing, self.output, every, order)

    def _untimed(self, images: np.ndarray) -> QueryResult:
        n = len(images)
        outputs = self._empty(n)
        for start in range(0, n, self.max_batch):
            response = self._post(encode_npy(images[start : start + self.max_batch]))
            if response.status_code == 429:
                result = QueryResult(outputs[:start], np.full(start, np.nan), 1, "untimed", self.output)
                raise BudgetExhausted(_message(response), result)
            outputs[start : start + self.max_batch] = self._read(response)
        return QueryResult(outputs, np.full(n, np.nan), 1, "untimed", self.output)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
