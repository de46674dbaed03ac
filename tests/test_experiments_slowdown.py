"""The SoK slowdown runner (experiments/slowdown.py) at tiny scale on the real CIFAR-10 archive."""

import pytest

from experiments import slowdown as runner


@pytest.mark.slow  # covered by the committed cpu-scale run of this runner
def test_sok_runner_writes_every_row_and_resumes(tmp_path, shared_data, capsys):
    del shared_data  # found by the default lookup; the fixture skips (or fails in CI) without it
    argv = ["--scale", "tiny", "--archs", "resnet56", "--quiet", "--results", str(tmp_path / "res"),
            "--outputs", str(tmp_path / "out")]  # fmt: skip
    runner.main(argv)
    path = tmp_path / "res" / "slowdown_sok_tiny.jsonl"
    records = {r["row"]: r for r in runner.read_records(path)}
    assert set(records) == set(runner.ROWS)
    for row, r in records.items():
        assert 0 <= r["accuracy"] <= 1 and r["test_images"] == 64
        if row != "detection":  # the adaptive attack runs on the half the detector did not see
            assert 0 <= r["efficacy"] <= 1 and sum(r["exit_histogram"]) == (32 if row == "adaptive" else 64)
    assert 0 <= records["detection"]["auc"] <= 1 and records["detection"]["detector_train_rows"] == 64
    assert (tmp_path / "out" / "slowdown" / "tiny" / "resnet56" / "linf.npy").exists()  # cached for resume
    markdown = path.with_suffix(".md").read_text()
    assert "| resnet56 | clean |" in markdown and "| 77.99 | 0.54 |" in markdown
    assert 0 <= records["adaptive"]["detector_detected_attacks"] <= 1 and "| adaptive (detected" in markdown
    capsys.readouterr()
    runner.main(argv)
    assert "all rows done, skipped" in capsys.readouterr().out
    assert len(runner.read_records(path)) == len(runner.ROWS)


def test_scales_are_consistent():
    for scale in runner.SCALES.values():
        assert scale.num_exits >= 2 and scale.linf_steps >= 1 and scale.l2_eps > 0
    with pytest.raises(SystemExit):
        runner.main(["--archs", "alexnet"])
