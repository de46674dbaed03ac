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
    _assert_the_sok_claims_that_hold_at_tiny_scale(records)
    markdown = path.with_suffix(".md").read_text()
    assert "| resnet56 | clean |" in markdown and "| 77.99 | 0.54 |" in markdown
    assert 0 <= records["adaptive"]["detector_detected_attacks"] <= 1 and "| adaptive (detected" in markdown
    capsys.readouterr()
    runner.main(argv)
    assert "all rows done, skipped" in capsys.readouterr().out
    assert len(runner.read_records(path)) == len(runner.ROWS)


def _assert_the_sok_claims_that_hold_at_tiny_scale(records):
    """The SoK (seed 001): DeepSloth drives efficacy to ~0 (0.54 -> 0.01); JPEG / smoothing win part of
    it back (0.08 / 0.33); an SVM on the per-exit outputs detects the attack (AUC 0.92) and an adaptive
    attacker evades it. The tiny victim (1 epoch on 512 images) is near chance in accuracy, so only the
    efficacy and detection claims can hold. Tiny runs with victim seeds 0 / 1 / 2 (2026-11-30): clean
    efficacy 0.663 / 0.386 / 0.063, L-inf 0.583 / 0.021 / 0.000, L-inf + JPEG 75 0.642 / 0.253 / 0.000,
    L-inf + smoothing 0.653 / 0.264 / 0.021; detection AUC 0.814 / 0.941 / 0.872, against the adaptive
    attack 0.509 / 0.588 / 0.496. (Where the clean victim already runs almost every image to its end,
    seed 2, there is nothing for a defense to win back: hence >= below, not >.)"""
    clean, linf = records["clean"]["efficacy"], records["linf"]["efficacy"]
    assert linf <= clean - 0.03, (clean, linf)  # DeepSloth takes efficacy away
    for defended in ("linf+jpeg75", "linf+smooth"):
        assert records[defended]["efficacy"] >= linf, (defended, records[defended]["efficacy"], linf)
    auc = records["detection"]["auc"]
    assert auc >= 0.7, auc  # the detector sees the non-adaptive attack
    assert records["adaptive"]["detector_auc"] <= auc - 0.2, (records["adaptive"]["detector_auc"], auc)


def test_scales_are_consistent():
    for scale in runner.SCALES.values():
        assert scale.num_exits >= 2 and scale.linf_steps >= 1 and scale.l2_eps > 0
    with pytest.raises(SystemExit):
        runner.main(["--archs", "alexnet"])
