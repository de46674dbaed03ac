"""A multi-exit victim served over HTTP, the attacker's oracle over the network, and timing-leak
countermeasures (METHODS §7).

create_app(oracle, ServeConfig) -> Starlette app   the oracle's victim, real early exit per request
ServeConfig, Countermeasure        server options as data: budget, limits, output, countermeasure
release_time, slot_end             when an answer may leave (pure; "constant", "uniform",
                                   "exponential"; "batch" answers at slot ends)
RemoteOracle(url)                  an `oracle.BlackBox` over HTTP, timed by round trip
background(app) / serve_forever / child_process   run a server (thread / foreground / child process)
load_test(url, images, ...)        bounded load test: requests/s and latency percentiles
encode_npy, decode, RequestError   the wire format and its checks; answer_body: fixed-length answers

`python -m mexjax serve --checkpoint DIR --port P` serves a saved victim.
"""

from mexjax.serve._app import Service, answer_body, create_app
from mexjax.serve._codec import NPY, RequestError, check_images, decode, encode_npy
from mexjax.serve._countermeasures import KINDS, Countermeasure, ServeConfig, release_time, slot_end
from mexjax.serve._loadtest import load_test
from mexjax.serve._remote import RemoteError, RemoteOracle
from mexjax.serve._run import background, child_process, serve_forever

__all__ = [
    "KINDS",
    "NPY",
    "Countermeasure",
    "RemoteError",
    "RemoteOracle",
    "RequestError",
    "ServeConfig",
    "Service",
    "answer_body",
    "background",
    "check_images",
    "child_process",
    "create_app",
    "decode",
    "encode_npy",
    "load_test",
    "release_time",
    "serve_forever",
    "slot_end",
]
