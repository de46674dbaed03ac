"""The command line and the demo behind the README's main command, on a tiny data dir."""

import json

import numpy as np

from mexjax import cli
from tests.data.makers import write_fashion_mnist, write_image_folder


def test_demo_on_tiny_data(tmp_path, cache_dir, capsys):
    data_dir = tmp_path / "data"
    write_image_folder(data_dir / "cifar10-jpeg75", {"test": {"cat": 5, "dog": 5}}, size=(32, 32))
    write_fashion_mnist(data_dir / "fashion-mnist", n_train=48, n_test=9)
    write_image_folder(
        data_dir / "tinyimagenet200-20k",
        {"train": {"n1": 40, "n2": 40}, "val": {"n1": 8, "n2": 8}},
        size=(64, 64),
    )
    out = tmp_path / "out"
    argv = [
        "demo",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        "--victim-images",
        "32",
        "--victim-epochs",
        "1",
        "--queries",
        "40",
        "--student-epochs",
        "1",
    ]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    # only the data the demo uses is decoded: the victim's test set and the attacker's images
    assert set(summary["datasets"]) == {"fashion_mnist/test", "tinyimagenet/train", "tinyimagenet/val"}
    assert summary["datasets"]["fashion_mnist/test"]["shape"] == [28, 28, 1] and not summary["skipped"]
    assert (out / "datasets.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert set(summary["phases"]) == {"data", "victim", "attack"}
    assert "[demo] victim: " in printed and "phases: data" in printed
    victim = summary["victim"]
    assert victim["inference_paths_agree"] is True and victim["dataset"] == "fashion_mnist"
    assert len(victim["accuracy_per_exit"]) == 6 and sum(victim["exit_histogram"]) == 9
    assert (out / "victim" / "model").is_dir() and "inference paths agree: True" in printed
    attack = summary["attack"]  # a tiny random-ish victim may show one exit only: then a clear message
    if "error" in attack:
        assert "single exit" in attack["error"]
    else:
        assert set(attack["table"]) == {"ours", "knockoff"} and (out / "runtimes.png").exists()
        assert (out / "exits_test.png").stat().st_size > 1000
        assert (
            attack["budget"] == 200 and attack["knockoff_queries"] == 80 and attack["held_out_queries"] == 16
        )
        assert 0 <= attack["table"]["ours"]["closeness_queries"] <= 1 and "CLO q." in printed
        assert 0 <= attack["exit_prediction"]["balanced_accuracy"] <= 1
        assert attack["exit_prediction"]["accuracy"] <= attack["best_boundary"]["accuracy"] <= 1
    mean = np.array(summary["datasets"]["tinyimagenet/val"]["channel_mean"])
    assert np.all((mean > 0.3) & (mean < 0.7))  # uniform random pixels average 0.5

    # a saved victim is attacked as it is: no training phase of its own
    again = tmp_path / "again"
    reuse = [*argv[:2], str(again), *argv[3:], "--victim", str(out / "victim"), "--queries", "0"]
    assert cli.main(reuse) == 0
    summary = json.loads((again / "summary.json").read_text())
    assert not (again / "victim").exists() and summary["victim"]["minutes"] == victim["minutes"]
    # a damaged one is reported, and the demo trains its own
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "result.json").write_text("{not json")
    assert cli.main([*reuse[:-4], "--victim", str(broken), "--queries", "0"]) == 0
    assert "cannot use the victim in" in capsys.readouterr().out and (again / "victim" / "model").is_dir()


def test_data_command_reports_missing(tmp_path, capsys):
    assert cli.main(["data", "svhn", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "svhn/train: not available" in out and "svhn/extra" in out


def test_slowdown_command(tmp_path, cache_dir, capsys):
    import jax

    from mexjax import exits, nets

    folder = tmp_path / "toy"
    write_image_folder(folder, {"test": {"a": 12, "b": 12}}, size=(32, 32))
    net = nets.build("vgg16", num_classes=2, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, images)))
    thresholds = [float(np.quantile(conf[0], 0.5)), float(np.quantile(conf[1], 0.5))]
    nets.save(tmp_path / "model", net, variables, thresholds=thresholds)
    out = tmp_path / "sd"
    argv = ["slowdown", "--checkpoint", str(tmp_path / "model"), "--dataset", str(folder), "--images", "24",
            "--steps", "8", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["images"] == 24 and np.load(out / "adversarial.npy").shape == (24, 32, 32, 3)
    assert result["attacked"]["efficacy"] < result["clean"]["efficacy"]
    assert (out / "efficacy.png").stat().st_size > 1000 and "attacked" in capsys.readouterr().out
    assert cli.main([*argv, "--defense", "jpeg75", "--norm", "universal", "--steps", "1"]) == 0
    assert json.loads((out / "result.json").read_text())["defense"] == "jpeg75"


def test_demo_sets_a_stale_victim_aside(tmp_path, monkeypatch, capsys):
    from mexjax import demo, victim
    from mexjax.checkpoint import CheckpointError

    victim_dir = tmp_path / "victim"
    (victim_dir / "run").mkdir(parents=True)
    (victim_dir / "run" / "metrics.jsonl").write_text("old run\n")
    calls = []

    def train(config, out_dir):  # the first call meets the stale checkpoint, the second trains afresh
        calls.append(out_dir)
        if len(calls) == 1:
            raise CheckpointError(f"{out_dir}/run holds a run with another spec")
        assert not out_dir.exists()  # the stale run is out of the way
        return {"trained": config}

    monkeypatch.setattr(victim, "train_victim", train)
    assert demo.train_or_set_aside("config", victim_dir) == {"trained": "config"}
    assert calls == [victim_dir, victim_dir]
    (aside,) = tmp_path.glob("victim.stale-*")
    assert (aside / "run" / "metrics.jsonl").read_text() == "old run\n"  # kept, not deleted
    assert "another spec" in capsys.readouterr().out
