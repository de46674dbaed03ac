"""The train loop: it learns, resumes bit-identically, shards over devices, freezes in IC-only mode."""

import json

import jax
import numpy as np
import pytest

from mexjax import data, nets, train
from mexjax.checkpoint import CheckpointError


def _toy(n=64, classes=4, seed=0):
    """Classes differ in brightness and in which quadrant is lit: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.int32)
    images = rng.integers(0, 40, (n, 32, 32, 3)).astype(np.int32)
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 2)
        images[i, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] += 180
    return data.Dataset(images.clip(0, 255).astype(np.uint8), labels, tuple("abcd"))


NET = dict(num_classes=4, num_exits=3, width=0.125)


@pytest.fixture(scope="module")
def net():
    return nets.build("vgg16", **NET)


def _same(a, b):
    return all(
        jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(x, y)), a, b))
    )


def test_training_learns_and_logs(net, tmp_path):
    ds = _toy()
    config = train.TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, milestones=(0.7,), flip=False)
    variables, history = train.fit(net, ds, config, workdir=tmp_path, eval_set=ds, progress=False)
    assert len(history) == 6
    assert max(history[-1]["eval_acc"]) >= 0.9, history[-1]  # 4 classes: chance is 0.25
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert history[0]["lr"] == pytest.approx(0.05) and history[-1]["lr"] == pytest.approx(0.005)
    probs = train.predict(net, variables, ds.images[:10], batch_size=4)
    assert probs.shape == (3, 10, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_resume_is_bit_identical(net, tmp_path):
    ds = _toy(48)
    config = train.TrainConfig(epochs=3, batch_size=16, learning_rate=0.05)
    straight, history = train.fit(net, ds, config, workdir=tmp_path / "a", progress=False)
    _, first = train.fit(net, ds, config, workdir=tmp_path / "b", progress=False, stop_after_epoch=0)
    assert len(first) == 1  # "killed" after the first epoch
    resumed, history_b = train.fit(net, ds, config, workdir=tmp_path / "b", progress=False)
    assert _same(straight, resumed)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in history_b]


def test_resume_refuses_another_configuration(net, tmp_path):
    ds = _toy(32)
    train.fit(net, ds, train.TrainConfig(epochs=1, batch_size=16), workdir=tmp_path, progress=False)
    other = nets.build("vgg16", num_classes=4, num_exits=3, width=0.25)
    with pytest.raises(CheckpointError, match="another spec"):
        train.fit(other, ds, train.TrainConfig(epochs=1, batch_size=16), workdir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another config"):
        train.fit(net, ds, train.TrainConfig(epochs=2, batch_size=16), workdir=tmp_path, progress=False)


def test_corrupt_checkpoint_is_reported(net, tmp_path):
    ds = _toy(32)
    config = train.TrainConfig(epochs=2, batch_size=16)
    train.fit(net, ds, config, workdir=tmp_path, progress=False, stop_after_epoch=0)
    for file in (tmp_path / "checkpoints").rglob("*"):
        if file.is_file() and "state" in file.parts:
            file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt|cannot be restored|unreadable"):
        train.fit(net, ds, config, workdir=tmp_path, progress=False)


@pytest.mark.multidevice
def test_data_parallel_matches_one_device(net, cpu_devices):
    ds = _toy(64)
    config = train.TrainConfig(epochs=1, batch_size=32, learning_rate=0.05)
    one, _ = train.fit(net, ds, config, devices=cpu_devices(1), progress=False)
    four, _ = train.fit(net, ds, config, devices=cpu_devices(4), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(four), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-5)
    assert not _same(one, net.init(jax.random.split(jax.random.key(0), 3)[0]))  # training did change it


def test_ic_only_trains_only_the_ics(net):
    ds = _toy(32)
    start = net.init(jax.random.key(3))
    config = train.TrainConfig(recipe="ic_only", epochs=1, batch_size=16)
    trained, _ = train.fit(net, ds, config, variables=start, progress=False)
    for name in start["params"]:
        same = _same(start["params"][name], trained["params"][name])
        assert same == (not name.startswith("ics_")), name
    assert _same(start["batch_stats"], trained["batch_stats"])
    with pytest.raises(ValueError, match="trained backbone"):
        train.fit(net, ds, config, progress=False)


@pytest.mark.multidevice
def test_a_batch_that_does_not_split_over_the_devices(net, cpu_devices):
    with pytest.raises(ValueError, match="does not split over 4 devices"):
        train.fit(
            net, _toy(32), train.TrainConfig(epochs=1, batch_size=18), devices=cpu_devices(4), progress=False
        )


def test_bad_training_input(net):
    ds = _toy(32)
    small = data.Dataset(np.zeros((4, 28, 28, 1), np.uint8), np.zeros(4, np.int32), ("a",))
    with pytest.raises(ValueError, match="to_input_shape"):
        train.fit(net, small, train.TrainConfig(epochs=1, batch_size=2), progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.fit(net, ds, train.TrainConfig(epochs=1, batch_size=64), progress=False)


def test_bfloat16_training_runs(tmp_path):
    bf = nets.build("resnet56", num_classes=4, num_exits=2, width=0.125, dtype="bfloat16")
    variables, history = train.fit(bf, _toy(32), train.TrainConfig(epochs=1, batch_size=16), progress=False)
    assert np.isfinite(history[0]["train_loss"])
    assert jax.tree_util.tree_leaves(variables["params"])[0].dtype == np.float32


@pytest.mark.parametrize("recipe", ["sdn", "adam", "ic_only"])
def test_the_optimizer_follows_optax_recipes_with_the_schedule_per_epoch(recipe):
    """The learning rate sits in the optimizer's state and is set per epoch; the updates are those of
    optax's SGD-with-momentum / Adam under the piecewise-constant schedule (the reference)."""
    import optax

    params = {"ics_0": {"w": jnp_ones(3)}, "units_0": {"w": jnp_ones(3) * 2.0}}
    config = train.TrainConfig(recipe=recipe, epochs=4, learning_rate=0.05, milestones=(0.5,))
    steps_per_epoch = 2
    schedule = optax.piecewise_constant_schedule(0.05, {2 * steps_per_epoch: 0.1})
    if recipe == "sdn":
        reference = optax.chain(
            optax.add_decayed_weights(config.weight_decay), optax.sgd(schedule, momentum=0.9)
        )
    elif recipe == "adam":
        reference = optax.adam(schedule)
    else:
        labels = {"ics_0": "ics", "units_0": "frozen"}
        reference = optax.multi_transform(
            {"ics": optax.adam(schedule), "frozen": optax.set_to_zero()}, labels
        )
    ours = train.make_optimizer(config, steps_per_epoch, params)
    state_ours, state_ref = ours.init(params), reference.init(params)
    p_ours = p_ref = params
    rng = np.random.default_rng(0)
    for epoch in range(config.epochs):
        assert train.learning_rate_at(config, epoch) == (0.05 if epoch < 2 else 0.05 * 0.1)
        state_ours = train.set_learning_rate(state_ours, train.learning_rate_at(config, epoch))
        for _ in range(steps_per_epoch):
            grads = jax.tree_util.tree_map(lambda a: np.asarray(rng.normal(size=a.shape), np.float32), params)
            with jax.numpy_dtype_promotion("standard"):
                u_ours, state_ours = ours.update(grads, state_ours, p_ours)
                u_ref, state_ref = reference.update(grads, state_ref, p_ref)
            p_ours, p_ref = optax.apply_updates(p_ours, u_ours), optax.apply_updates(p_ref, u_ref)
    for a, b in zip(jax.tree_util.tree_leaves(p_ours), jax.tree_util.tree_leaves(p_ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    if recipe == "ic_only":  # the backbone stays frozen
        np.testing.assert_array_equal(np.asarray(p_ours["units_0"]["w"]), 2.0)


def jnp_ones(n):
    return jax.numpy.ones((n,), jax.numpy.float32)


def test_runs_that_differ_in_learning_rate_epochs_or_data_size_compile_one_step_program(net):
    """What lets the compilation cache serve a second run: the step program holds no learning rate,
    no epoch count and no schedule boundary."""
    variables = net.init(jax.random.key(0))
    texts = []
    for lr, epochs, steps_per_epoch in ((0.1, 2, 5), (0.01, 7, 40)):
        config = train.TrainConfig(epochs=epochs, batch_size=8, learning_rate=lr)
        tx = train.make_optimizer(config, steps_per_epoch, variables["params"])
        state = train.TrainState(
            step=jax.numpy.zeros((), jax.numpy.int32), params=variables["params"],
            batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]), fixed={},
        )  # fmt: skip
        state = state.replace(opt_state=train.set_learning_rate(state.opt_state, lr))
        step = jax.jit(train.make_train_step(net, tx, config))
        images = np.zeros((8, *net.input_shape), np.uint8)
        labels = np.zeros(8, np.int32)
        weights = np.ones(net.num_exits, np.float32)
        texts.append(step.lower(state, images, labels, {}, weights, jax.random.key(0)).as_text())
    assert texts[0] == texts[1]
