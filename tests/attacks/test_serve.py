"""The served victim: answers over HTTP equal the in-process oracle's, bad requests get clear 4xx
answers while the server keeps serving, budgets per client, countermeasures, and a stolen copy."""

import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from mexjax import cli, nets, oracle, serve
from mexjax.attacks import steal

BUDGET = 100


@pytest.fixture(scope="module")
def victim(victim_setup):
    """One in-process oracle (measured timing) shared by the servers here: compiled once."""
    net, variables, thresholds, _, _ = victim_setup
    return oracle.Oracle(net, variables, thresholds, budget=100_000)


@pytest.fixture(scope="module")
def expected(victim, victim_setup):
    """The in-process answers to the first 8 query images."""
    return victim.query(victim_setup[3][:8]).outputs


@pytest.fixture(scope="module")
def served(victim):
    config = serve.ServeConfig(budget=BUDGET, max_batch=16, max_body_bytes=64 * 1024)
    with serve.background(serve.create_app(victim, config)) as url:
        yield url


def _post(url, body, content_type=serve.NPY, client="tester"):
    headers = {"Content-Type": content_type, **({"X-Client-Id": client} if client else {})}
    return httpx.post(f"{url}/v1/predict", content=body, headers=headers)


def _png(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_release_time_and_slot_end_hand_cases():
    none = serve.Countermeasure()
    assert serve.release_time(none, 1.0, 1.5, 1, 0.3) == 1.5
    constant = serve.Countermeasure("constant", full_time=0.25)
    assert serve.release_time(constant, 1.0, 1.1, 2, 0.0) == 1.5  # padded to 2 images x 0.25 s
    assert serve.release_time(constant, 1.0, 1.7, 2, 0.0) == 1.7  # an overrun leaves at once
    assert serve.release_time(serve.Countermeasure("uniform", delay=0.1), 0, 1.0, 1, 0.5) == 1.05
    exponential = serve.Countermeasure("exponential", delay=0.1)
    assert serve.release_time(exponential, 0, 1.0, 1, 1 - math.exp(-1)) == pytest.approx(1.1)
    assert serve.slot_end(0.6, 0.25) == 0.75
    assert serve.slot_end(0.5, 0.25) == 0.75  # strictly after
    with pytest.raises(ValueError, match="slot ends"):
        serve.release_time(serve.Countermeasure("batch", window=0.1), 0, 1, 1, 0.0)
    with pytest.raises(ValueError, match="not known yet"):
        serve.release_time(serve.Countermeasure("constant"), 0, 1, 1, 0.0)
    with pytest.raises(ValueError, match="draw"):
        serve.release_time(none, 0, 1, 1, 1.0)


def test_options_are_checked():
    with pytest.raises(ValueError, match="one of"):
        serve.Countermeasure("sleep")
    with pytest.raises(ValueError, match="delay > 0"):
        serve.Countermeasure("uniform")
    with pytest.raises(ValueError, match="window > 0"):
        serve.Countermeasure("batch")
    for kind, option in (("batch", "window"), ("uniform", "delay"), ("constant", "full_time")):
        with pytest.raises(ValueError, match=f"{option} must be a finite"):  # never answered otherwise
            serve.Countermeasure(kind, **{option: math.inf})
    with pytest.raises(ValueError, match="max_batch"):
        serve.ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="budget"):
        serve.ServeConfig(budget=-1)


def test_decode_accepts_npy_png_and_jpeg():
    shape = (32, 32, 3)
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(serve.decode(serve.encode_npy(image), serve.NPY, shape, 4), image[None])
    floats = image[None].astype(np.float32) / 255
    np.testing.assert_array_equal(serve.decode(serve.encode_npy(floats), serve.NPY, shape, 4), floats)
    np.testing.assert_array_equal(serve.decode(_png(image), "image/png", shape, 4), image[None])
    jpeg = serve.decode(_png(image, "JPEG"), "image/jpeg", shape, 4)
    assert jpeg.shape == (1, *shape) and jpeg.dtype == np.uint8
    gray = serve.decode(_png(image), "image/png", (32, 32, 1), 4)  # converted to the victim's channels
    assert gray.shape == (1, 32, 32, 1)


def test_remote_answers_equal_the_in_process_oracle(served, victim_setup, expected):
    images = victim_setup[3][:6]
    with serve.RemoteOracle(served, client_id="equal") as remote:
        assert isinstance(remote, oracle.BlackBox)  # what every attack is typed against
        assert remote.input_shape == (32, 32, 3) and remote.num_classes == 4 and remote.budget == BUDGET
        timed = remote.query(images, passes=2)
        untimed = remote.query(images, timed=False)
        assert remote.used == 18 and remote.remaining == BUDGET - 18
    np.testing.assert_array_equal(timed.outputs, expected[:6])
    np.testing.assert_array_equal(untimed.outputs, expected[:6])
    assert timed.timing == "network" and timed.passes == 2 and np.all(timed.runtimes > 0)
    np.testing.assert_array_equal(timed.runtimes, timed.pass_runtimes.min(axis=0))
    assert timed.pass_order.shape == (2, 6) and sorted(timed.pass_order[1]) == list(range(6))
    assert untimed.timing == "untimed" and np.isnan(untimed.runtimes).all()


def test_answer_body_has_a_fixed_length_and_exact_values():
    probs = np.array([[1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [np.float32(1 / 3), 1e-30, 0.5]], np.float32)
    bodies = [serve.answer_body(row[None], "probs", 3) for row in probs]
    assert len({len(b) for b in bodies}) == 1
    parsed = [np.asarray(json.loads(b)["probabilities"], np.float32) for b in bodies]
    np.testing.assert_array_equal(np.concatenate(parsed), probs)
    labels = [serve.answer_body(np.array([y]), "labels", 12) for y in (0, 11)]
    assert len(labels[0]) == len(labels[1]) and json.loads(labels[1])["labels"] == [11]


def test_nothing_names_the_exit(served, victim, victim_setup):
    sizes = {
        len(_post(served, serve.encode_npy(im[None]), client="sizes").content) for im in victim_setup[3][:20]
    }
    assert len(sizes) == 1  # whatever the exit, the answer has the same size
    assert len(set(oracle.true_exits(victim, victim_setup[3][:20]))) > 1  # the images leave at several exits
    response = _post(served, serve.encode_npy(victim_setup[3][:2]), client="nosy")
    health = httpx.get(f"{served}/health")
    assert response.status_code == 200 and health.status_code == 200
    assert set(response.json()) == {"probabilities"}
    assert not any("exit" in k.lower() or "timing" in k.lower() for k in response.headers)
    assert "exit" not in health.text.lower() and "threshold" not in health.text.lower()


def test_labels_only_server(victim_setup, expected):
    net, variables, thresholds, images, _ = victim_setup
    labels_only = oracle.Oracle(net, variables, thresholds, budget=100, output="labels")
    with serve.background(serve.create_app(labels_only)) as url, serve.RemoteOracle(url) as remote:
        result = remote.query(images[:4])
        assert labels_only.used == 4  # four answers: the warm-up spends no query
    assert result.output == "labels" and result.outputs.dtype == np.int32
    np.testing.assert_array_equal(result.outputs, expected[:4].argmax(-1))


def _pickled():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{}], object), allow_pickle=True)
    return buffer.getvalue()


def _bad_requests(images):
    one = images[:1]
    return {
        "no client id": (dict(body=serve.encode_npy(one), client=None), 400, "X-Client-Id"),
        "bad client id": (dict(body=serve.encode_npy(one), client="a b"), 400, "X-Client-Id"),
        "content type": (dict(body=b"{}", content_type="application/json"), 415, "Content-Type"),
        "empty body": (dict(body=b""), 400, "empty"),
        "not npy": (dict(body=b"\x00" * 64), 400, ".npy"),
        "cut npy": (dict(body=serve.encode_npy(one)[:200]), 400, ".npy"),
        "pickle": (dict(body=_pickled()), 400, ".npy"),
        "shape": (dict(body=serve.encode_npy(one[:, :16])), 422, "shape"),
        "dtype": (dict(body=serve.encode_npy(one.astype(np.float64))), 422, "float32"),
        "nan": (dict(body=serve.encode_npy(np.full(one.shape, np.nan, np.float32))), 422, "NaN"),
        "range": (dict(body=serve.encode_npy(one.astype(np.float32))), 422, "[0, 1]"),
        "batch": (dict(body=serve.encode_npy(images[:17])), 422, "between 1 and 16"),
        "too large": (dict(body=b"\x93NUMPY" + b"\x00" * 70_000), 413, "bytes"),
        "bad png": (
            dict(body=b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, content_type="image/png"),
            400,
            "image/png",
        ),
        "png size": (dict(body=_png(images[0, :16, :16]), content_type="image/png"), 422, "32x32"),
        "npy header lies": (dict(body=_npy_declaring((10_000_000_000, 32, 32, 3))), 400, "declares shape"),
        "png bomb": (dict(body=_png_declaring(20000, 20000), content_type="image/png"), 422, "pixels"),
        "not an image": (dict(body=b"\x89PNG" + b"\x01" * 40, content_type="image/png"), 400, "image/png"),
    }


def _npy_declaring(shape):
    """A small .npy body whose header declares `shape` (uint8): its data would not fit in memory."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\x00" * 64


def _png_declaring(width, height):
    """A PNG whose header declares width x height pixels (the pixel data itself is tiny)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 8))
        + chunk(b"IEND", b"")
    )


def test_bad_requests_get_4xx_and_the_server_keeps_serving(served, victim_setup):
    images = victim_setup[3]
    for name, (request, status, fragment) in _bad_requests(images).items():
        response = _post(served, **request)
        assert response.status_code == status, (name, response.text)
        assert fragment in response.json()["error"], (name, response.json())
        assert " at 0x" not in response.text, (name, response.text)  # no address of the server's memory
        assert _post(served, serve.encode_npy(images[:1]), client="steady").status_code == 200, name
    unknown = httpx.get(f"{served}/v2/predict")
    wrong_method = httpx.get(f"{served}/v1/predict")
    assert unknown.status_code == 404 and "/v2/predict" in unknown.json()["error"]
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    rejected = httpx.get(f"{served}/v1/budget", headers={"X-Client-Id": "tester"}).json()
    assert rejected["used"] == 0  # refused requests cost nothing


def test_budget_per_client(served, victim_setup):
    images = victim_setup[3]
    with serve.RemoteOracle(served, client_id="spender") as remote:
        remote.query(images[: BUDGET - 10], timed=False)  # 90 images in 6 requests
        with pytest.raises(oracle.BudgetExhausted, match=f"{BUDGET} queries allowed") as caught:
            remote.query(images[:8], passes=2)
        assert len(caught.value.answered) == 5 and remote.remaining == 0
    refused = _post(served, serve.encode_npy(images[:1]), client="spender")
    assert refused.status_code == 429 and "budget exhausted for client 'spender'" in refused.json()["error"]
    assert _post(served, serve.encode_npy(images[:1]), client="other").status_code == 200


def test_a_stale_client_count_still_stops_at_the_servers(served, victim_setup, expected):
    images = victim_setup[3]
    with (
        serve.RemoteOracle(served, client_id="twin") as first,
        serve.RemoteOracle(served, client_id="twin") as second,
    ):
        first.query(images[: BUDGET - 3], timed=False)
        assert second.remaining == BUDGET  # it has not heard of the first one's queries
        with pytest.raises(oracle.BudgetExhausted) as caught:
            second.query(images[:5])
        np.testing.assert_array_equal(caught.value.answered.outputs, expected[:3])
        assert second.remaining == 0
    with serve.RemoteOracle(served, client_id="twin2", seed=1) as first:  # refused in a shuffled pass
        first.query(images[: BUDGET - 12], timed=False)
        first.used -= 10  # stale: it believes 22 remain
        with pytest.raises(oracle.BudgetExhausted) as caught:
            first.query(images[:5], passes=3)  # passes 0 and 1 all 5, pass 2 (shuffled) 2 of them
    answered = caught.value.answered  # the first images timed in all 3 passes (none to 2)
    assert len(answered) <= 2 and np.all(answered.pass_runtimes > 0)
    np.testing.assert_array_equal(answered.outputs, expected[: len(answered)])
    with pytest.raises(serve.RemoteError, match="X-Client-Id"):
        serve.RemoteOracle(served, client_id="not valid")


def test_steal_through_the_network(served, victim, victim_setup):
    """The unchanged attack code against the served victim; the evaluator holds the victim locally."""
    queries = victim_setup[3]
    with serve.RemoteOracle(served, client_id="thief") as remote:
        config = steal.StealConfig(width=0.125, epochs=1, batch_size=32, use_timing=False, num_exits=3)
        result = steal.timing_attack(remote, queries[:64], config, progress=False)
        assert result.queries_used == remote.used == 64 and result.timing == "network"
    report = steal.evaluate(victim, result, queries[128:], np.zeros(32, np.int32))
    assert report["student_exits"] == 3 and 0 <= report["closeness"] <= report["fidelity"] <= 1
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    np.testing.assert_array_equal(result.query_images, queries[:64])


@pytest.mark.parametrize(
    ("countermeasure", "least"),
    [
        (serve.Countermeasure("constant", full_time=0.03), 0.03),
        (serve.Countermeasure("batch", window=0.03), 0.03),
    ],
)
def test_countermeasures_hold_answers_back(victim, victim_setup, expected, countermeasure, least):
    app = serve.create_app(victim, serve.ServeConfig(countermeasure=countermeasure))
    with serve.background(app) as url, serve.RemoteOracle(url) as remote:
        result = remote.query(victim_setup[3][:6])
    assert np.all(result.runtimes >= least), result.runtimes  # never earlier than the pad / one slot
    np.testing.assert_array_equal(result.outputs, expected[:6])


def test_one_slot_answers_requests_of_either_dtype(victim, victim_setup, expected):
    images = victim_setup[3][:2]
    bodies = [serve.encode_npy(images[:1]), serve.encode_npy(images[1:2].astype(np.float32) / 255)]
    slots = serve.ServeConfig(countermeasure=serve.Countermeasure("batch", window=0.25))
    with serve.background(serve.create_app(victim, slots)) as url, ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda body: _post(url, body), bodies))  # one slot: test_countermeasures
    got = [np.asarray(r.json()["probabilities"], np.float32) for r in responses]
    np.testing.assert_array_equal(got[0], expected[:1])
    np.testing.assert_allclose(got[1], expected[1:2], atol=1e-6)  # floats scaled here, not in the oracle


def test_constant_time_measures_its_pad_and_random_delays_answer(victim, victim_setup, expected):
    constant = serve.ServeConfig(countermeasure=serve.Countermeasure("constant", pad_runs=5))
    assert serve.create_app(victim, constant).state.service.config.countermeasure.full_time > 0
    jitter = serve.ServeConfig(countermeasure=serve.Countermeasure("exponential", delay=0.002))
    with serve.background(serve.create_app(victim, jitter)) as url, serve.RemoteOracle(url) as remote:
        result = remote.query(victim_setup[3][:4])
    np.testing.assert_array_equal(result.outputs, expected[:4])


def test_load_test_counts_every_request(served, victim_setup):
    report = serve.load_test(served, victim_setup[3][:8], requests=24, concurrency=3, client_id="load")
    assert report["requests"] == report["answered"] == 24 and report["errors"] == {}
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"] and report["requests_per_s"] > 0


def test_child_process_serves_a_saved_victim(victim_setup, expected, tmp_path):
    net, variables, thresholds, images, _ = victim_setup
    nets.save(tmp_path / "model", net, variables, thresholds=thresholds)
    args = ["--checkpoint", str(tmp_path / "model"), "--budget", "5"]
    with serve.child_process(args) as url, serve.RemoteOracle(url) as remote:
        np.testing.assert_array_equal(remote.query(images[:2]).outputs, expected[:2])
        assert remote.remaining == 3


def test_serve_command_serves_a_saved_victim(victim_setup, expected, tmp_path, monkeypatch):
    net, variables, thresholds, images, _ = victim_setup
    nets.save(tmp_path / "model", net, variables, thresholds=thresholds)
    seen = {}
    monkeypatch.setattr(
        serve, "serve_forever", lambda app, host, port: seen.update(app=app, host=host, port=port)
    )
    argv = ["serve", "--checkpoint", str(tmp_path / "model"), "--port", "0", "--budget", "7"]
    assert cli.main([*argv, "--countermeasure", "uniform", "--delay", "0.001"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 0
    with serve.background(seen["app"]) as url, serve.RemoteOracle(url) as remote:
        assert remote.budget == 7
        np.testing.assert_array_equal(remote.query(images[:2]).outputs, expected[:2])


def test_a_stalled_body_times_out_and_the_client_table_is_bounded(victim, victim_setup):
    import socket
    import time
    from urllib.parse import urlparse

    images = victim_setup[3]
    config = serve.ServeConfig(budget=BUDGET, read_timeout=0.5, max_clients=2)
    with serve.background(serve.create_app(victim, config)) as url:
        where = urlparse(url)
        body = serve.encode_npy(images[:1])
        with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
            head = (
                f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-Client-Id: slow\r\nContent-Type: {serve.NPY}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[: len(body) // 2])  # half the body, then nothing
            start = time.monotonic()
            answer = sock.recv(4096).decode()
            waited = time.monotonic() - start
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer
        assert waited < 5  # answered after the timeout, not held open
        assert _post(url, body, client="first").status_code == 200
        assert _post(url, body, client="second").status_code == 200
        third = _post(url, body, client="third")
        assert third.status_code == 503 and "at most 2 clients" in third.json()["error"]
        assert _post(url, body, client="first").status_code == 200  # known clients keep their budgets
    with pytest.raises(ValueError, match="read_timeout"):
        serve.ServeConfig(read_timeout=math.inf)
    with pytest.raises(ValueError, match="max_clients"):
        serve.ServeConfig(max_clients=0)
