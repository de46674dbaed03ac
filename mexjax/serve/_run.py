"""Running the server: in the foreground (the CLI), on a background thread (tests), or as a child
process (experiments and benchmarks, so that the attacker's clock does not share a GIL with the victim)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import uvicorn

READY = "mexjax serve: listening on "


def _server(app) -> uvicorn.Server:
    # no Server header, no access log: nothing per request beyond the answer; log_config=None leaves the
    # process's logging alone (uvicorn's own config binds handlers to the sys.stderr of that moment)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, server_header=False, lifespan="off"
    )
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait in the backlog until the server accepts them
    return sock


def serve_forever(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `app` until interrupted (port 0: any free port). Prints the URL once it listens."""
    sock = _bind(host, port)
    print(f"{READY}http://{host}:{sock.getsockname()[1]}", flush=True)
    try:
        _server(app).run(sockets=[sock])
    finally:
        _close(app)


def _close(app) -> None:
    service = getattr(app.state, "service", None)
    if service is not None:  # the worker thread of `create_app`
        service.close()


@contextlib.contextmanager
def background(app, host: str = "127.0.0.1", *, start_timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on a free port of `host` from a background thread; yields the base URL and
    always shuts the server down on exit."""
    sock = _bind(host, 0)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {start_timeout} s")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        _close(app)


@contextlib.contextmanager
def child_process(args: list[str], *, start_timeout: float = 300.0) -> Iterator[str]:
    """Run `python -m mexjax serve ARGS --port 0` as a child process; yields its URL once it listens
    and stops it on exit. Its output goes to this process's stderr."""
    command = [sys.executable, "-m", "mexjax", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = _wait_ready(child, start_timeout)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_ready(child: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    for line in child.stdout:
        if line.startswith(READY):
            return line[len(READY) :].strip()
        sys.stderr.write(line)
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"the served victim did not start (exit code {child.poll()}): see its output above")
