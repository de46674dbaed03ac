"""Saving and loading a network with its thresholds."""

import jax
import numpy as np
import pytest

from mexjax import nets
from mexjax.checkpoint import CheckpointError


def test_roundtrip(tmp_path):
    net = nets.build("mobilenet", num_classes=3, num_exits=3, width=0.125, mean=(0.1, 0.2, 0.3))
    variables = net.init(jax.random.key(0))
    nets.save(tmp_path / "m", net, variables, thresholds=[0.7, 0.8], info={"dataset": "toy"})
    loaded, restored, thresholds, info = nets.load(tmp_path / "m")
    assert loaded.spec == net.spec and info == {"dataset": "toy"}
    np.testing.assert_array_equal(thresholds, np.array([0.7, 0.8], np.float32))
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    for a, b in zip(net.logits(variables, x), loaded.logits(restored, x), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_save_checks_thresholds(tmp_path):
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    with pytest.raises(ValueError, match="needs 2 thresholds"):
        nets.save(tmp_path / "m", net, net.init(jax.random.key(0)), thresholds=[0.5])


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no saved model"):
        nets.load(tmp_path / "missing")
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    nets.save(tmp_path / "m", net, net.init(jax.random.key(0)))
    for meta in (tmp_path / "m").rglob("*"):
        if meta.is_file() and "meta" in meta.parts:
            meta.write_text("{broken")
    with pytest.raises(CheckpointError):
        nets.load(tmp_path / "m")


def test_saving_over_a_model_replaces_it(tmp_path):
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    first, second = net.init(jax.random.key(0)), net.init(jax.random.key(1))
    nets.save(tmp_path / "m", net, first, thresholds=[0.5, 0.6])
    nets.save(tmp_path / "m", net, second, thresholds=[0.9, 0.9], info={"run": 2})
    _, restored, thresholds, info = nets.load(tmp_path / "m")
    np.testing.assert_array_equal(thresholds, np.float32([0.9, 0.9]))
    assert info == {"run": 2}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left beside it


def test_save_refuses_variables_of_another_spec(tmp_path):
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    wider = nets.build("vgg16", num_classes=3, num_exits=3, width=0.25)
    nets.save(tmp_path / "m", net, net.init(jax.random.key(0)), thresholds=[0.5, 0.6])
    with pytest.raises(ValueError, match="do not fit the net's spec"):
        nets.save(tmp_path / "m", net, wider.init(jax.random.key(0)))
    _, _, thresholds, _ = nets.load(tmp_path / "m")  # the model already there is untouched
    np.testing.assert_array_equal(thresholds, np.float32([0.5, 0.6]))


def test_a_damaged_checkpoint_is_refused(tmp_path):
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    nets.save(tmp_path / "m", net, net.init(jax.random.key(0)), thresholds=[0.5, 0.6])
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file() and p.name != "sha256sums.json"]
    largest = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(largest.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 16] = bytes(b ^ 0xFF for b in raw[middle : middle + 16])
    largest.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        nets.load(tmp_path / "m")


def test_transfer_backbone_copies_the_backbone_and_keeps_fresh_heads():
    source_net = nets.build("vgg16", num_classes=20, num_exits=2, width=0.0625)
    source = source_net.init(jax.random.key(1))
    target_net = nets.build("vgg16", num_classes=5, num_exits=4, width=0.0625)
    fresh = target_net.init(jax.random.key(2))
    out, copied = nets.transfer_backbone(source, fresh)
    flat_out = dict(jax.tree_util.tree_leaves_with_path(out))
    flat_src = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}
    flat_fresh = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(fresh)}
    backbone = [k for k in flat_fresh if "units_" in k]
    assert backbone and copied >= len(backbone)
    for path, value in flat_out.items():
        name = jax.tree_util.keystr(path)
        if "units_" in name:  # the backbone, batch statistics included, comes from the source
            np.testing.assert_array_equal(value, flat_src[name])
        elif "ics_" in name or "Dense_2" in name:  # exit heads and the class layer stay fresh
            np.testing.assert_array_equal(value, flat_fresh[name])
    # the result runs in the target net
    assert np.stack(target_net.logits(out, np.zeros((1, 32, 32, 3), np.float32))).shape == (4, 1, 5)
