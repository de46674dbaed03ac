"""Smoke runs of every benchmark script in benchmarks/ (tiny sizes, a few seconds each), so that an API
change that breaks one fails the default test run. They check that each script runs and writes what it
promises, not its speed (speed is what the scripts themselves measure, on a quiet machine)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import bench_conv
import bench_data_load
import bench_extraction
import bench_kde_search
import bench_serve
import bench_slowdown
import bench_timed_path
import bench_train_step
import bench_xla_flags
import jax
import jax.numpy as jnp
import pytest
import timing


def _rows(path):
    return json.loads(Path(path).read_text())["rows"]


def test_bench_slowdown_smoke(tmp_path):
    out = tmp_path / "slowdown.json"
    bench_slowdown.main(["--archs", "vgg16", "--widths", "0.125", "--batch", "4", "--steps", "2",
                         "--repeats", "1", "--out", str(out)])  # fmt: skip
    (row,) = _rows(out)
    assert (row["arch"], row["batch"], row["steps"]) == ("vgg16", 4, 2) and row["img_s"] > 0


def test_bench_extraction_smoke(tmp_path):
    out = tmp_path / "extraction.json"
    bench_extraction.main(
        [
            "--arch",
            "vgg16",
            "--width",
            "0.125",
            "--iterations",
            "1",
            "--batch-size",
            "8",
            "--methods",
            "maze",
            "--answer-batch",
            "8",
            "--out",
            str(out),
        ]
    )
    rows = {row["what"]: row for row in _rows(out)}
    assert {"maze queries/s", "answer 8 images, defense DCP"} <= set(rows) and "dfme queries/s" not in rows
    assert rows["maze queries/s"]["queries_per_second"] > 0 and rows["maze queries/s"]["iterations"] >= 1


def test_bench_kde_search_smoke(capsys):
    bench_kde_search.main(["--sizes", "200", "--search-n", "200", "--search-k", "3"])
    printed = capsys.readouterr().out
    assert "threshold search, N = 200, K = 3" in printed and "faster |" in printed


def test_bench_timed_path_smoke():
    out = bench_timed_path.measure("vgg16", 0.125, 3, runs=20, block=10)
    assert set(out) == {"jit dispatch", "lean"}
    for row in out.values():
        assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]


def test_bench_data_load_smoke(shared_data, monkeypatch, tmp_path):
    del shared_data  # the real CIFAR-10 test split, found by the default lookup
    monkeypatch.setenv("MEXJAX_CACHE_DIR", str(tmp_path / "kept"))
    result = bench_data_load.main(["--name", "cifar10", "--split", "test", "--repeats", "1"])
    assert result["images"] == 10000 and result["cached_s"] > 0 and result["first_s"] > 0
    import os

    assert os.environ["MEXJAX_CACHE_DIR"] == str(tmp_path / "kept")  # the benchmark's cold cache is undone


def test_bench_serve_smoke(tmp_path):
    out = tmp_path / "serve.json"
    bench_serve.main(["--requests", "8", "--time-limit", "10", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [run["concurrency"] for run in result["load_tests"]] == [1, 4]
    assert all(run["answered"] > 0 for run in result["load_tests"]) and result["in_process_answers_per_s"] > 0


def test_bench_xla_flags_smoke(tmp_path, capsys):
    out = tmp_path / "flags.json"
    (result,) = bench_xla_flags.main(["--options", "default", "--archs", "vgg16", "--widths", "0.125",
                                      "--batch", "8", "--steps", "1", "--out", str(out)])  # fmt: skip
    assert "error" not in result, result
    # the option's bench_nets.py run (in its own process: XLA reads its options at start)
    (row,) = json.loads(out.read_text())["results"][0]["rows"]
    assert row["arch"] == "vgg16" and row["train_img_s"] > 0 and row["eval_img_s"] > 0
    assert row["early_exit_img_s"] > 0 and sum(row["early_exit_histogram"]) == 8
    assert len(row["batch1_latency_ms"]) == 7
    assert "| default | vgg16 w0.125 b8 float32 |" in capsys.readouterr().out


def test_bench_xla_flags_table_compares_with_the_default_and_pytorch(monkeypatch):
    def row(train, eval_, lat):
        return {"arch": "vgg16", "width": 0.25, "batch": 128, "dtype": "float32", "train_img_s": train,
                "eval_img_s": eval_, "early_exit_img_s": 100.0, "batch1_latency_ms": lat}  # fmt: skip

    monkeypatch.setattr(bench_xla_flags, "torch_reference", lambda: {("vgg16", 0.25, 128): {
        "train_img_s": 400.0, "eval_img_s": 1000.0}})  # fmt: skip
    results = [
        {"option": "default", "rows": [row(200.0, 500.0, [1.0, 4.0])]},
        {"option": "onednn", "rows": [row(300.0, 250.0, [0.5, 8.0])]},
        {"option": "xnnpack", "error": "unknown flag"},
    ]
    text = bench_xla_flags.markdown(results, "test machine")
    assert "| onednn | vgg16 w0.25 b128 float32 | 300 (1.50x; 0.75x PyTorch) |" in text
    assert "| 250 (0.50x; 0.25x PyTorch) |" in text
    assert "| 0.50 / 8.00 (2.00x / 0.50x) |" in text and "| xnnpack | - | failed: unknown flag |" in text


def test_bench_conv_smoke(tmp_path, capsys):
    out = tmp_path / "conv.json"
    rows = bench_conv.main(["--batch", "2", "--repeats", "1", "--out", str(out)])
    assert [r["layer"] for r in rows] == [layer[0] for layer in bench_conv.LAYERS]
    assert all(r["batch"] == 2 and r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 for r in rows)
    assert _rows(out) == json.loads(json.dumps(rows))
    assert "depthwise3x3 64 @16x16 b2" in capsys.readouterr().out


def test_bench_train_step_smoke(tmp_path, capsys):
    out = tmp_path / "train-step.json"
    bench_train_step.main(["--archs", "vgg16", "--widths", "0.0625", "--batches", "4", "--steps", "1",
                           "--out", str(out)])  # fmt: skip
    (row,) = _rows(out)
    assert (row["arch"], row["batch"]) == ("vgg16", 4) and "| vgg16 w0.0625 b4 |" in capsys.readouterr().out
    for piece in ("forward", "forward_backward", "step", "augment", "update", "eval", "no_bn_eval"):
        assert row[f"{piece}_ms"] > 0, piece
    assert row["backward_over_forward"] == pytest.approx(row["forward_backward_ms"] / row["forward_ms"] - 1)


def test_bench_train_step_removes_batch_norm_only_inside_its_context():
    from mexjax import nets

    def has_batch_stats():
        net = nets.build("vgg16", num_classes=4, num_exits=2, width=0.0625)
        variables = net.module.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)
        return bool(jax.tree_util.tree_leaves(variables.get("batch_stats", {})))

    with bench_train_step.without_batch_norm():
        assert not has_batch_stats()
    assert has_batch_stats()


def test_median_seconds_times_after_the_warm_up(monkeypatch):
    clock = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # three timed calls: 1 s, 3 s, 2 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert timing.median_seconds(lambda: calls.append(1), 3, warmup=2) == 2.0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeats"):
        timing.median_seconds(lambda: None, 0)
