"""`python -m mexjax train-victim` end to end on a tiny image folder."""

import dataclasses
import json

import numpy as np
import pytest

from mexjax import cli, nets
from tests.data.makers import write_image_folder


def test_train_victim_cli(tmp_path, cache_dir, capsys):
    folder = tmp_path / "toy"
    write_image_folder(
        folder, {"train": {"a": 24, "b": 24}, "test": {"a": 8, "b": 8}}, size=(28, 28), mode="L"
    )
    out = tmp_path / "victim"
    argv = [
        "train-victim", "--arch", "resnet56", "--dataset", str(folder), "--exits", "3", "--width", "0.125",
        "--epochs", "1", "--batch-size", "8", "--held-out", "8", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy per exit" in printed and "exit histogram" in printed and "min on" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["input_shape"] == [32, 32, 1]  # 28x28 gray padded to 32x32
    assert len(result["test"]["accuracy_per_exit"]) == 3 and sum(result["test"]["exit_histogram"]) == 16
    assert result["minutes"] > 0 and "CPU cores" in result["machine"]
    assert result["train_images"] == 40
    flops = result["exit_flops"]
    expected_mean = np.dot(result["test"]["exit_histogram"], flops) / 16
    assert abs(result["test"]["mean_flops"] - expected_mean) < 1e-6 * flops[-1]
    net, _, thresholds, info = nets.load(out / "model")
    assert net.num_exits == 3 and len(thresholds) == 2 and info["dataset"] == str(folder)
    np.testing.assert_allclose(thresholds, result["thresholds"], atol=1e-4)
    assert (out / "exits.png").stat().st_size > 1000
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_train_victim_with_given_thresholds(tmp_path, cache_dir):
    folder = tmp_path / "toy"
    write_image_folder(folder, {"train": {"a": 12, "b": 12}, "test": {"a": 4, "b": 4}}, size=(32, 32))
    out = tmp_path / "v"
    argv = [
        "train-victim", "--arch", "vgg16", "--dataset", str(folder), "--exits", "3", "--width", "0.125",
        "--epochs", "1", "--batch-size", "8", "--held-out", "8", "--thresholds", "0.0,1.0", "--out", str(out),
        "--quiet",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["thresholds"] == [0.0, 1.0] and result["thresholds_how"] == "given per exit"
    assert result["test"]["exit_histogram"] == [8, 0, 0]  # threshold 0 at exit 1: everything leaves there


def test_load_or_train_refuses_a_folder_of_another_victim(tmp_path):
    from mexjax import victim_training

    saved = victim_training.VictimConfig(
        arch="vgg16", dataset="fashion_mnist", num_exits=3, width=0.125, epochs=1
    )
    (tmp_path / "model").mkdir()
    (tmp_path / "result.json").write_text(json.dumps({"config": dataclasses.asdict(saved)}))
    other = dataclasses.replace(saved, epochs=2)
    with pytest.raises(ValueError, match="another config"):
        victim_training.load_or_train(other, tmp_path)
