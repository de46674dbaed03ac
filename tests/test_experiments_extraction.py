"""The DivQAT comparison runner (experiments/extraction.py) at tiny scale on the real offline data."""

import argparse

import pytest

from experiments import extraction as runner


@pytest.mark.slow  # covered by the committed cpu-scale results (experiments/results/extraction_cpu.*)
def test_extraction_runner_writes_a_cell_and_resumes(tmp_path, shared_data, capsys):
    del shared_data  # found by the default lookup; the fixture skips (or fails in CI) without it
    argv = ["--scale", "tiny", "--defenses", "divqat+dcp", "--attacks", "dfme", "--quiet",
            "--results", str(tmp_path / "res"), "--outputs", str(tmp_path / "out")]  # fmt: skip
    runner.main(argv)
    path = tmp_path / "res" / "extraction_tiny.jsonl"
    (record,) = runner.read_records(path)
    assert (record["defense"], record["attack"]) == ("divqat+dcp", "dfme")
    assert 0 <= record["victim_accuracy"] <= 1 and 0 <= record["stolen_accuracy"] <= 1
    assert 0 <= record["fidelity"] <= 1 and record["queries"] == 2 * 8 * 7 and record["test_images"] == 64
    assert "| divqat+dcp | dfme |" in path.with_suffix(".md").read_text()
    assert (tmp_path / "out" / "extraction" / "tiny" / "divqat" / "done").exists()  # cached for reruns
    capsys.readouterr()
    runner.main(argv)
    assert "divqat+dcp x dfme: done, skipped" in capsys.readouterr().out
    assert len(runner.read_records(path)) == 1


def test_markdown_compares_with_qat():
    base = dict(victim_accuracy=0.8, fidelity=0.5, queries=10, seconds=1.0, machine="m")
    records = [
        {**base, "defense": "qat", "attack": "dfme", "stolen_accuracy": 0.6},
        {**base, "defense": "divqat", "attack": "dfme", "stolen_accuracy": 0.45, "victim_accuracy": 0.79},
    ]
    table = runner.write_markdown(records, "cpu")
    assert "| divqat | dfme | 79.0 | 45.0 | 50.0 | -1.0 | -15.0 | +0.0 |" in table


def test_defense_names_include_an_alpha_sweep(capsys):
    assert runner.defense_name("divqat+dcp") == "divqat+dcp"
    assert (
        runner.defense_name("divqat:1.5") == "divqat:1.5"
        and runner.defense_name("divqat:0+rs") == "divqat:0+rs"
    )
    for bad in ("divqat:-1", "divqat:x", "qat:0.5", "divqat:1+jpeg", "nothing"):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown defense"):
            runner.defense_name(bad)
    with pytest.raises(SystemExit):
        runner.main(["--defenses", "divqat:-1"])
    assert "unknown defense 'divqat:-1'" in capsys.readouterr().err
