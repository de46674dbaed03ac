"""Resuming from run/metrics.jsonl left by a killed run: a cut last line, duplicate epoch records."""

import json

import numpy as np
import pytest

from mexjax import checkpoint, data, nets, train


def _toy(n=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 4).astype(np.int32)
    return data.Dataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), labels, tuple("abcd"))


CONFIG = train.TrainConfig(recipe="adam", epochs=2, batch_size=16, augment=False)


@pytest.fixture(scope="module")
def net():
    return nets.build("halfalexnet", num_classes=4, num_exits=1, width=0.125)  # quick to compile


def _epochs(workdir):
    return [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_kill_between_metrics_line_and_checkpoint_leaves_no_duplicate(net, tmp_path, monkeypatch):
    ds = _toy()

    def killed(self, step, state, meta):
        raise KeyboardInterrupt("killed after the metrics line, before the checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.Checkpointer, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False)
    assert _epochs(tmp_path) == [1]  # epoch 1 logged, not checkpointed
    _, history = train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert _epochs(tmp_path) == [1, 2]


def test_resume_keeps_the_checkpoint_record_of_a_duplicate_epoch(net, tmp_path):
    ds = _toy()
    _, first = train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False, stop_after_epoch=0)
    stale = {**first[0], "train_loss": 123.0}
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(stale) + "\n")  # a second record of epoch 1, not the checkpointed one
    _, history = train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False)
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]
    assert _epochs(tmp_path) == [1, 2]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0]) == first[0]


def test_cut_last_metrics_line_is_skipped_on_resume(net, tmp_path):
    ds = _toy()
    _, first = train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False, stop_after_epoch=0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_loss": 1.3')  # killed while writing epoch 2's line
    with pytest.warns(UserWarning, match=r"metrics\.jsonl.*last line \(2\).*cut short"):
        _, history = train.fit(net, ds, CONFIG, workdir=tmp_path, progress=False)
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]
    assert _epochs(tmp_path) == [1, 2]


def test_corrupt_metrics_line_before_the_last_is_an_error(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"epoch": 1, "train_loss": 1.0}\n{"epoch": 2, "tr\n{"epoch": 3, "train_loss": 0.5}\n')
    with pytest.raises(train.MetricsFileError, match=r"metrics\.jsonl line 2 .*corrupt.*delete"):
        train.read_metrics(metrics)
    metrics.write_text('{"epoch": 1, "train_loss": 1.0}\n{"epoch": 2, "tr')
    with pytest.warns(UserWarning, match="cut short"):
        assert train.read_metrics(metrics) == [{"epoch": 1, "train_loss": 1.0}]
