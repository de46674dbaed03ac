"""The few-call runner (experiments/fewcall.py): its table and plot, and a tiny real-data run."""

import pytest

from experiments import fewcall as runner
from tests.data.makers import write_image_folder


def _record(method, calls, accuracy, fidelity=0.5, kept=(3, 40)):
    rounds = [dict(round=1, calls=5 * calls, pseudo_proposed=kept[1], pseudo_kept=kept[0])]
    return dict(method=method, calls_per_class=calls, calls=10 * calls, accuracy=accuracy, fidelity=fidelity,
                rounds=rounds, victim_accuracy=0.6, student="halfalexnet x0.5", machine="m")  # fmt: skip


def test_markdown_and_plot_compare_few_call_with_knockoff(tmp_path):
    records = [_record("fewcall", 8, 0.31), _record("knockoff", 8, 0.25), _record("fewcall", 16, 0.4),
               _record("full-data", 0, 0.55, 0.7), _record("random-selection", 8, 0.28)]  # fmt: skip
    table = runner.write_markdown(records, "cpu")
    assert "| 8 | 80 | 31.0 | 25.0 | +6.0 | 50.0 | 50.0 | 3 / 40 |" in table
    assert "| 16 | 160 | 40.0 |  |  | 50.0 |  | 3 / 40 |" in table  # KnockoffNets cell not run yet
    assert "accuracy 55.0 %, fidelity 70.0 %. Victim accuracy: 60.0 %." in table
    assert "| 8 | random-selection | 28.0 | 50.0 | 31.0 |" in table
    runner.plot(records, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_a_dataset_without_offline_proxies_needs_a_proxy_folder(tmp_path, capsys):
    with pytest.raises(SystemExit, match="gtsrb has no offline proxy source.*--proxy-dir"):
        runner.main(["--dataset", "gtsrb", "--scale", "tiny", "--results", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # refused before anything was trained or written


@pytest.mark.slow  # covered by the committed cpu-scale results (experiments/results/fewcall_cpu.*)
def test_fewcall_runner_at_tiny_scale_writes_and_resumes(tmp_path, shared_data, capsys):
    del shared_data
    argv = ["--scale", "tiny", "--methods", "fewcall", "knockoff", "no-pseudo-labels", "--quiet",
            "--results", str(tmp_path / "res"), "--outputs", str(tmp_path / "out")]  # fmt: skip
    runner.main(argv)
    records = runner.read_records(tmp_path / "res" / "fewcall_tiny.jsonl")
    assert sorted((r["method"], r["calls_per_class"], r["calls"]) for r in records) == [
        ("fewcall", 2, 20), ("fewcall", 4, 40), ("knockoff", 2, 20), ("knockoff", 4, 40),
        ("no-pseudo-labels", 2, 20)]  # fmt: skip
    ablation = next(r for r in records if r["method"] == "no-pseudo-labels")
    assert all(r["pseudo_kept"] == 0 for r in ablation["rounds"])
    assert all(0 <= r["accuracy"] <= 1 and r["test_images"] == 64 for r in records)
    assert (tmp_path / "res" / "fewcall_tiny.png").exists()
    capsys.readouterr()
    runner.main(argv)
    assert "fewcall x 2 calls/class: done, skipped" in capsys.readouterr().out


@pytest.mark.slow  # the GTSRB path at tiny scale, with a generated proxy folder
def test_fewcall_runner_on_gtsrb_with_a_proxy_folder(tmp_path, shared_data):
    del shared_data
    proxies = tmp_path / "proxies"
    write_image_folder(proxies, {"x": {f"{c:05d}": 4 for c in range(43)}}, size=(32, 32))
    runner.main(["--dataset", "gtsrb", "--scale", "tiny", "--methods", "fewcall", "--quiet",
                 "--proxy-dir", str(proxies / "x"), "--results", str(tmp_path / "res"),
                 "--outputs", str(tmp_path / "out")])  # fmt: skip
    records = runner.read_records(tmp_path / "res" / "fewcall_gtsrb_tiny.jsonl")
    assert [(r["calls_per_class"], r["calls"], r["proxies"]) for r in records] == [
        (2, 86, 172),
        (4, 172, 172),
    ]
    assert "GTSRB VGG16 SDN victim" in (tmp_path / "res" / "fewcall_gtsrb_tiny.md").read_text()
