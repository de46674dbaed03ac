"""Test configuration: strict JAX promotion, fake CPU devices, and the shared datasets.

XLA_FLAGS must be set before jax initialises its backend, so it is set at import time here:
every test session sees `FAKE_DEVICES` CPU devices (1 unless MEXJAX_TEST_DEVICES says more).
"""

import os

# One CPU device by default: the library trains over every local device, and on 2 cores splitting each
# tiny batch over 4 fake devices made the training tests ~1.5x slower. The sharding tests (marked
# `multidevice`) need several: scripts/test.sh runs them in a phase of their own with
# MEXJAX_TEST_DEVICES=4.
FAKE_DEVICES = int(os.environ.get("MEXJAX_TEST_DEVICES", "1"))
_flag = f"--xla_force_host_platform_device_count={FAKE_DEVICES}"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
if os.environ.get("MEXJAX_TEST_COMPILE_CACHE", "1") == "1":
    # Many tests train and run the same tiny nets; XLA's persistent cache (keyed by the compiled program,
    # JAX version and flags) lets a repeat compile of an identical program load the first one's
    # executable instead, every program however short its compile (0.3 s and up only: the attack tests
    # took 12 % longer). scripts/test.sh keeps it between runs (MEXJAX_TEST_XLA_CACHE), one directory per
    # test process: a directory shared by the processes needs JAX's file lock, which made a fresh run
    # 2 minutes slower. An unreadable entry is compiled again.
    import tempfile

    _base = os.environ.get("MEXJAX_TEST_XLA_CACHE")
    if _base:
        _compile_cache = os.path.join(_base, os.environ.get("PYTEST_XDIST_WORKER", "main"))
        os.makedirs(_compile_cache, exist_ok=True)
    else:
        _compile_cache = tempfile.mkdtemp(prefix="mexjax-xla-cache-")
    jax.config.update("jax_compilation_cache_dir", _compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Decoded-array cache private to the test session (never the user's ~/.cache/mexjax)."""
    old = os.environ.get("MEXJAX_CACHE_DIR")
    os.environ["MEXJAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("mexjax-cache"))
    yield
    if old is None:
        os.environ.pop("MEXJAX_CACHE_DIR", None)
    else:
        os.environ["MEXJAX_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def _require_checksums():
    """Every image-folder archive a test loads must be listed in a SHA256SUMS beside it (tests about
    the missing-checksum warning unset the variable themselves)."""
    old = os.environ.get("MEXJAX_REQUIRE_CHECKSUMS")
    os.environ["MEXJAX_REQUIRE_CHECKSUMS"] = "1"
    yield
    if old is None:
        os.environ.pop("MEXJAX_REQUIRE_CHECKSUMS", None)
    else:
        os.environ["MEXJAX_REQUIRE_CHECKSUMS"] = old


@pytest.fixture(autouse=True)
def _no_user_data_dir(monkeypatch):
    """Tests must not depend on the developer's MEXJAX_DATA_DIR."""
    monkeypatch.delenv("MEXJAX_DATA_DIR", raising=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty cache for tests that check caching itself."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MEXJAX_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data. Missing: skipped, or a failure when MEXJAX_REQUIRE_DATA=1 (as in CI)."""
    if not (SHARED_DATA / "SHA256SUMS").is_file():
        message = f"the shared datasets are not at {SHARED_DATA}"
        if os.environ.get("MEXJAX_REQUIRE_DATA") == "1":
            pytest.fail(message + " (MEXJAX_REQUIRE_DATA=1)")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture
def cpu_devices():
    """Return a function n -> the first n (fake) CPU devices, for sharding tests."""

    def take(n: int):
        devices = jax.devices("cpu")
        if len(devices) < n:
            if n <= FAKE_DEVICES:  # asked for, not granted
                pytest.fail(f"need {n} CPU devices, have {len(devices)}: XLA_FLAGS was set too late")
            pytest.skip(f"needs {n} CPU devices: run with MEXJAX_TEST_DEVICES={n} (scripts/test.sh does)")
        return devices[:n]

    return take


@pytest.fixture(scope="session")
def toy_victim():
    """A tiny victim trained on the 4-class toy task (learnable in seconds), and its test set."""
    from mexjax import nets, train
    from tests.train.test_fit import _toy

    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    config = train.TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, milestones=(0.7,), flip=False)
    variables, _ = train.fit(net, _toy(128), config, progress=False)
    return net, variables, _toy(200, seed=1)
