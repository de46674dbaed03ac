"""A multi-exit victim served over HTTP, the attacker's oracle over the network, and timing-leak
countermeasures (METHODS §7).

Public API:
The server
  create_app(oracle, ServeConfig) -> Starlette app   the oracle's victim, real early exit per request
  Service(oracle, config)            what the endpoints call: one worker thread, per-client budgets,
                                     release times
  answer_body(outputs, output, C)    the JSON answer, its length fixed by the number of answers alone
  ServeConfig, Countermeasure        server options as data: budget, limits, output, countermeasure
  KINDS                              countermeasures: "none", "constant", "uniform", "exponential", "batch"
  release_time, slot_end             when an answer may leave (pure; "batch" answers at slot ends)
The wire format
  encode_npy(images) / NPY           a request body and its content type (application/x-npy)
  decode(body, content_type, ...)    checked images from a request body (.npy, PNG or JPEG)
  check_images(images, shape, max_batch)   shape, dtype, range and batch-size checks
  RequestError                       a bad request: its 4xx status and what to fix
The client and running
  RemoteOracle(url)                  an `oracle.BlackBox` over HTTP, timed by round trip
  RemoteError                        the server refused a request (other than for budget)
  background(app) / serve_forever / child_process   run a server (thread / foreground / child process)
  load_test(url, images, ...)        bounded load test: requests/s and latency percentiles

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
