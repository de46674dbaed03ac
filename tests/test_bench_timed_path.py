"""Smoke run of benchmarks/bench_timed_path.py (tiny net, a few runs), so that the script cannot rot."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import bench_timed_path


def test_bench_timed_path_smoke():
    out = bench_timed_path.measure("vgg16", 0.125, 3, runs=20, block=10)
    assert set(out) == {"jit dispatch", "lean"}
    for row in out.values():
        assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
