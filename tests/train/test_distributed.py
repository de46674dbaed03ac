"""Training under jax.distributed: two CPU processes on loopback form one global mesh (one device
each) and reach the same parameters as one process training on two devices."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))  # fmt: skip
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    port = _free_port()
    two = str(tmp_path / "two.npz")
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), "2", str(port), two],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    one = str(tmp_path / "one.npz")
    alone = subprocess.run([sys.executable, str(WORKER), "0", "1", "0", one], env=_env(2),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs[0][-2000:] + outputs[1][-2000:]
    assert alone.returncode == 0, alone.stderr[-2000:]
    a, b, c = np.load(two), np.load(one), np.load(two.replace(".npz", "_1.npz"))
    assert list(a["devices"]) == [2, 2] and list(b["devices"]) == [2, 1]  # (global devices, processes)
    params = [k for k in b.files if k.startswith("['params']") or k.startswith("params")]
    assert len(params) > 10
    for key in b.files:
        if key == "devices":
            continue
        np.testing.assert_array_equal(a[key], c[key])  # both processes hold the same replicated state
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert not np.allclose(a["train_loss"][0], a["train_loss"][1])  # it trained
