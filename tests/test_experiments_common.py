"""The pieces every experiment runner shares (experiments/_common.py)."""

import dataclasses

import numpy as np
import pytest

from experiments import _common
from mexjax.results import append_record


def test_pick_scale_names_the_scales_it_has():
    scales = {"tiny": 1, "cpu": 2}
    assert _common.pick_scale(scales, "cpu") == 2
    with pytest.raises(ValueError, match="unknown scale 'gpu': this runner has tiny, cpu"):
        _common.pick_scale(scales, "gpu")


def test_finished_cells_and_the_machines_of_a_table(tmp_path):
    path = tmp_path / "table.jsonl"
    assert _common.finished(path, lambda r: r["cell"]) == set()  # no file yet: nothing finished
    for cell, seed in (("a", 0), ("b", 0), ("a", 1)):
        append_record(path, {"cell": cell, "seed": seed, **_common.stamp()})
    assert _common.finished(path, lambda r: r["cell"]) == {"a", "b"}
    assert _common.finished(path, lambda r: (r["cell"], r["seed"]), lambda r: r["seed"] == 1) == {("a", 1)}
    records = [{"machine": "m2"}, {"machine": "m1"}, {"machine": "m2"}]
    assert _common.machines(records) == "m1; m2"
    assert _common.machines([]) == "-"


def test_cached_array_computes_once(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return np.arange(3)

    for _ in range(2):
        np.testing.assert_array_equal(_common.cached_array(tmp_path / "x.npy", make), np.arange(3))
    assert len(calls) == 1


def test_every_runner_builds_its_scales_by_keyword_and_names_them():
    from experiments import extraction, fewcall, gpu, serve, slowdown, slowdown_captions, steal

    for runner in (extraction, fewcall, gpu, serve, slowdown, slowdown_captions, steal):
        for name, scale in runner.SCALES.items():
            assert runner.get_config(name) is scale and dataclasses.is_dataclass(scale)
        with pytest.raises(ValueError, match="unknown scale"):
            runner.get_config("no-such-scale")
