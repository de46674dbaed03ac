"""The notebooks run end to end at tiny size, on a tiny generated data folder and a simulated clock
(so they need neither the shared archives nor a quiet machine).

Each notebook's first code cell is tagged `parameters`; the test inserts a cell after it that sets
tiny values (as papermill does) and executes the notebook in a fresh kernel with nbclient.
"""

import json
import os
import sys
from pathlib import Path

import nbclient
import nbformat
import numpy as np
from PIL import Image

from tests.data.makers import write_fashion_mnist, write_image_folder

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY_VICTIM = {"VICTIM_IMAGES": 64, "VICTIM_EPOCHS": 1, "VICTIM_EXITS": 3, "VICTIM_WIDTH": 0.125}


def _with_parameters(nb, values: dict):
    """Insert a cell setting `values` right after the cell tagged `parameters`."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def write_queries(folder: Path, per_class: int, seed: int = 1):
    """A TinyImageNet-like folder (val/<class>/) of 32x32 grayscale images drawn like the fake
    FashionMNIST images (uniform noise, 28x28 padded to 32x32): the queries then follow the victim's
    own image statistics, so a barely trained victim's "spread" thresholds spread them over the exits."""
    rng = np.random.default_rng(seed)
    for cls in ("n0", "n1"):
        target = folder / "val" / cls
        target.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.pad(rng.integers(0, 256, (28, 28), dtype=np.uint8), 2)
            Image.fromarray(pixels, "L").save(target / f"{i:04d}.png")


def _kernel_env() -> dict:
    """The test session's environment (private decode cache) minus its fake-device XLA flag: the kernel
    runs on one CPU device, as a user's notebook does. At tiny size compiling dominates, so XLA skips its
    backend optimizations (about a third less time)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_backend_optimization_level=0"])
    env["JAX_PLATFORMS"] = "cpu"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def _kernel(root: Path, monkeypatch) -> str:
    """A kernel spec of this interpreter, found first (JUPYTER_PATH), whatever the user has installed."""
    spec = root / "kernels" / "mexjax-tests"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "mexjax tests", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    return spec.name


def _execute(nb, tmp_path: Path, monkeypatch):
    """Run `nb` in place in a fresh kernel (CellExecutionError on the first failing cell); returns its
    code cells and the PNG figures they displayed."""
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name=_kernel(tmp_path / "jupyter", monkeypatch),
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=_kernel_env())
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in _outputs(c, "error")]
    figures = [o for c in code for o in _outputs(c, "display_data") if "image/png" in o.get("data", {})]
    return code, figures


def _outputs(cell, kind: str):
    return [o for o in cell.get("outputs", []) if o.get("output_type") == kind]


def test_steal_multiexit_notebook(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    write_fashion_mnist(data_dir / "fashion-mnist", n_train=96, n_test=40)
    write_queries(data_dir / "tinyimagenet200-20k", per_class=64)
    out_dir = tmp_path / "out"
    nb = nbformat.read(NOTEBOOKS / "steal_multiexit.ipynb", as_version=4)
    tiny = {
        "DATA_DIR": str(data_dir),
        "OUT_DIR": str(out_dir),
        **TINY_VICTIM,
        "THRESHOLD": "spread",  # a barely trained victim is never confident: share the exits out
        "QUERIES": 64,
        "TIMING": "simulated",
        "PASSES": 2,
        "STUDENT_WIDTH": 0.125,
        "STUDENT_EPOCHS": 1,
        "TEST_IMAGES": 8,
        "PROGRESS": False,
    }
    code, figures = _execute(_with_parameters(nb, tiny), tmp_path, monkeypatch)
    assert len(figures) >= 5  # victim exits, runtime density, confusion, confidences, exits taken
    printed = "".join(o["text"] for c in code for o in _outputs(c, "stream") if o["name"] == "stdout")
    assert "simulated" in printed
    table = "".join(o["text"] for o in _outputs(code[-1], "stream") if o["name"] == "stdout")
    header = table.splitlines()[0]
    for column in ("ACC", "fidelity", "CLO", "exit agr.", "CC (MFLOPs)"):
        assert column in header
    assert [line.split()[0] for line in table.splitlines()[1:4]] == ["victim", "KnockoffNets", "ours"]

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["parameters"]["TIMING"] == "simulated" and summary["parameters"]["QUERIES"] == 64
    assert summary["estimated_exits"] >= 2
    assert summary["knockoff_queries"] == 2 * 64  # the same budget as distinct images
    assert set(summary["table"]) == {"victim", "KnockoffNets", "ours"}
    for row in summary["table"].values():
        assert all(0 <= row[key] <= 1 for key in ("accuracy", "fidelity", "closeness", "exit_agreement"))
        assert row["mean_flops"] > 0
    assert 0 <= summary["exit_prediction"]["balanced_accuracy"] <= 1
    for result in summary["evaluate"].values():
        assert sum(result["exit_histogram"]) == 8 and result["timing"] == "simulated"


def test_slowdown_notebook(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    classes = {"a": 40, "b": 40}
    write_image_folder(data_dir / "cifar10-jpeg75", {"train": classes, "test": classes}, size=(32, 32))
    out_dir = tmp_path / "out"
    nb = nbformat.read(NOTEBOOKS / "slowdown.ipynb", as_version=4)
    tiny = {
        "DATA_DIR": str(data_dir),
        "OUT_DIR": str(out_dir),
        **TINY_VICTIM,
        "TEST_IMAGES": 16,
        "STEPS": 2,
        "UNIVERSAL_IMAGES": 32,
        "UNIVERSAL_EPOCHS": 1,
        "CAPTION_IMAGES": 48,
        "CAPTION_STEPS": 6,
        "CAPTION_TEST": 4,
        "CAPTION_ATTACK_STEPS": 2,
        "PROGRESS": False,
    }
    code, figures = _execute(_with_parameters(nb, tiny), tmp_path, monkeypatch)
    assert len(figures) >= 6  # clean, attacks, images, defenses, detector scores, caption lengths
    printed = ["".join(o["text"] for o in _outputs(c, "stream") if o["name"] == "stdout") for c in code]
    table = next(text for text in printed if text.startswith("condition") and "efficacy" in text)
    assert [line.split()[0] for line in table.splitlines()[1:3]] == ["clean", "DeepSloth"]
    captions = next(text for text in printed if text.startswith("condition") and "BLEU-4" in text)
    assert [line.split()[0] for line in captions.splitlines()[1:3]] == ["clean", "NICGSlowDown"]

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["parameters"]["STEPS"] == 2 and summary["parameters"]["TEST_IMAGES"] == 16
    outcomes = summary["outcomes"]
    assert {"clean", "DeepSloth L∞", "DeepSloth L2", "universal", "L∞ + JPEG 90", "clean + smoothing"} <= set(
        outcomes
    )
    for name, o in outcomes.items():
        assert 0 <= o["accuracy"] <= 1 and 0 <= o["efficacy"] <= 1
        assert sum(o["exit_histogram"]) == (8 if name.startswith("adaptive") else 16)
    assert 0 <= summary["detection"]["auc"] <= 1
    assert 0 <= summary["adaptive_detection"]["detected_attacks"] <= 1
    assert set(summary["captioner"]) == {"clean", "NICGSlowDown L∞", "L∞ + JPEG 75", "clean + JPEG 75"}
    assert all(row["steps"] >= 1 and row["latency_ms"] > 0 for row in summary["captioner"].values())
    from mexjax import captioning

    assert captioning.load_captioner(out_dir / "captioner")[0].spec.decoder == "rnn"  # the checkpoint


def test_fewcall_notebook(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    classes = {"a": 40, "b": 40}
    write_image_folder(data_dir / "cifar10-jpeg75", {"train": classes, "test": classes}, size=(32, 32))
    write_queries(data_dir / "tinyimagenet200-20k", per_class=16)
    proxy_dir = tmp_path / "proxies"
    write_image_folder(proxy_dir, {"x": {"a": 12, "b": 12}}, size=(32, 32))
    out_dir = tmp_path / "out"
    nb = nbformat.read(NOTEBOOKS / "fewcall.ipynb", as_version=4)
    tiny = {
        "DATA_DIR": str(data_dir),
        "OUT_DIR": str(out_dir),
        **TINY_VICTIM,
        "PROXY_DIR": str(proxy_dir / "x"),
        "CALLS": [4],  # one point: each budget trains two students (compiling dominates at this size)
        "STUDENT_WIDTH": 0.125,
        "EPOCHS": 1,
        "TEST_IMAGES": 16,
        "PROGRESS": False,
    }
    code, figures = _execute(_with_parameters(nb, tiny), tmp_path, monkeypatch)
    assert len(figures) >= 3  # proxies, selected proxies, accuracy against calls
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [(r["method"], r["calls"]) for r in summary["rows"]] == [("few-call", 8), ("KnockoffNets", 8)]
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["fidelity"] <= 1 for r in summary["rows"])
    assert [r["calls"] for r in summary["rounds"]] == [4, 4]  # the step-by-step run: 2 rounds x 2 classes x 2
    table = "".join(o["text"] for o in _outputs(code[-1], "stream") if o["name"] == "stdout")
    assert table.splitlines()[1].split()[:3] == ["few-call", "4", "8"]
