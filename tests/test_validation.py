"""Inputs that used to pass silently or fail obscurely get clear errors; the CLI reports them on one line."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mexjax import cli, exits, metrics, nets, train
from tests.data.makers import write_image_folder

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny():
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    return net, net.init(jax.random.key(0))


def _uint8_images(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


# --- learning rate and weight decay: 0 is a value, not "use the default" ---------------------------------


class _Stop(Exception):
    """Raised by a stand-in for training once it has seen its configuration."""


def test_zero_learning_rate_is_kept():
    assert train.TrainConfig(learning_rate=0.0).lr == 0.0
    assert train.TrainConfig(learning_rate=None).lr == 0.1


def test_cli_zero_lr_and_weight_decay_reach_training(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    write_image_folder(folder, {"train": {"a": 6, "b": 6}, "test": {"a": 2, "b": 2}}, size=(32, 32))
    seen = {}

    def fit(net, train_set, config, **kwargs):
        seen["config"] = config
        raise _Stop

    monkeypatch.setattr(train, "fit", fit)
    argv = ["train-victim", "--dataset", str(folder), "--exits", "2", "--width", "0.125", "--held-out", "4",
            "--lr", "0", "--weight-decay", "0", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    with pytest.raises(_Stop):
        cli.main(argv)
    assert seen["config"].lr == 0.0 and seen["config"].weight_decay == 0.0
    with pytest.raises(SystemExit) as raised:  # a negative rate is refused by the parser
        cli.main([*argv, "--lr", "-0.1"])
    assert raised.value.code == 2


# --- normalization constants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": float("nan")},
        {"mean": (0.5, float("inf"), 0.5)},
        {"std": float("nan")},
        {"std": float("inf")},
        {"std": 0.0},
        {"std": (0.2, -0.2, 0.2)},
    ],
)
def test_build_rejects_non_finite_or_non_positive_normalization(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        nets.build("vgg16", num_classes=3, num_exits=2, width=0.125, **kwargs)


def test_a_spec_with_nan_std_is_refused(tiny):
    net, _ = tiny
    with pytest.raises(ValueError, match="std must be finite and positive"):
        nets.from_spec(dataclasses.replace(net.spec, std=(float("nan"),) * 3))


# --- image range ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_float_images_are_refused(tiny, value):
    net, variables = tiny
    images = np.full((2, 32, 32, 3), 0.5, np.float32)
    images[1, 4, 4, 2] = value
    with pytest.raises(ValueError, match="finite"):
        net.logits(variables, images)
    with pytest.raises(ValueError, match="finite"):
        net.runner().early_exit_batched(variables, images, np.full(2, 0.5, np.float32))


@pytest.mark.parametrize("value,dtype", [(1.5, np.float32), (-0.01, np.float32), (255.0, np.float16)])
def test_out_of_range_float_images_are_refused(tiny, value, dtype):
    net, variables = tiny
    images = np.full((2, 32, 32, 3), 0.5, dtype)
    images[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match=r"within \[0, 1\].*1/255"):
        net.check_inputs(images)
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        net.runner().policy(variables, images, np.full(2, 0.5, np.float32))


def test_unit_range_floats_and_uint8_are_accepted(tiny):
    net, _ = tiny
    edges = np.zeros((2, 32, 32, 3), np.float32)
    edges[1] = 1.0
    np.testing.assert_array_equal(np.asarray(net.check_inputs(edges)), edges)
    images = _uint8_images(2)
    images[0, 0, 0, 0] = 255
    np.testing.assert_allclose(np.asarray(net.check_inputs(images)), images / 255.0, rtol=0, atol=1e-6)


# --- a runner built by hand (README) and net.runner() agree on uint8 ----------------------------------


def test_readme_runner_matches_net_runner_on_uint8(tiny):
    net, variables = tiny
    (line,) = [
        x.strip() for x in README.read_text().splitlines() if x.startswith("runner = exits.ExitRunner(")
    ]
    scope = {"exits": exits, "net": net}
    exec(line, scope)  # the README's own construction
    by_hand, checked = scope["runner"], net.runner()
    images = _uint8_images(6)
    thresholds = np.full(2, 0.4, np.float32)
    np.testing.assert_allclose(
        np.asarray(by_hand.all_exits(variables, images)),
        np.asarray(checked.all_exits(variables, images)),
        atol=1e-6,
    )
    exits_a, probs_a = by_hand.early_exit_batched(variables, images, thresholds)
    exits_b, probs_b = checked.early_exit_batched(variables, images, thresholds)
    np.testing.assert_array_equal(exits_a, exits_b)
    np.testing.assert_allclose(probs_a, probs_b, atol=1e-6)
    exit_a, row_a = by_hand.early_exit_single(variables, images[:1], thresholds)
    exit_b, row_b = checked.early_exit_single(variables, images[:1], thresholds)
    assert exit_a == exit_b
    np.testing.assert_allclose(row_a, row_b, atol=1e-6)


# --- empty batches and runner arguments ------------------------------------------------------------------


def test_logits_of_an_empty_batch_are_empty(tiny):
    net, variables = tiny
    for images in (np.zeros((0, 32, 32, 3), np.float32), np.zeros((0, 32, 32, 3), np.uint8)):
        logits = net.logits(variables, images)
        assert len(logits) == net.num_exits
        assert all(np.asarray(x).shape == (0, net.num_classes) for x in logits)
    exit_ids, probs = net.runner().early_exit_batched(variables, images, np.full(2, 0.5, np.float32))
    assert exit_ids.shape == (0,) and probs.shape == (0, net.num_classes)


def test_exit_runner_rejects_bad_buckets_tile_and_stages(tiny):
    net, _ = tiny
    stages = tuple(net.stage(i) for i in range(net.num_exits))
    with pytest.raises(ValueError, match="buckets must name at least one"):
        exits.ExitRunner(stages, buckets=())
    with pytest.raises(ValueError, match="tile must be a positive int"):
        exits.ExitRunner(stages, tile=0)
    with pytest.raises(ValueError, match="must increase"):
        exits.ExitRunner(stages, buckets=(0, 8))
    with pytest.raises(ValueError, match="at least one stage"):
        exits.ExitRunner(())
    with pytest.raises(ValueError, match="buckets must name at least one"):
        net.runner(buckets=())


# --- saving --------------------------------------------------------------------------------------------


def test_save_names_missing_variables(tiny, tmp_path):
    net, variables = tiny
    with pytest.raises(ValueError, match="lack 'batch_stats'"):
        nets.save(tmp_path / "model", net, {"params": variables["params"]})
    with pytest.raises(ValueError, match="lack 'params' and 'batch_stats'"):
        nets.save(tmp_path / "model", net, {})
    assert not (tmp_path / "model").exists()


def test_a_float64_spec_is_refused_by_name(tiny, tmp_path):
    net, variables = tiny
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16; got 'float64'"):
        nets.save(
            tmp_path / "model", nets.from_spec(dataclasses.replace(net.spec, dtype="float64")), variables
        )


# --- metrics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimated,true",
    [([0, 1e9], [0, 1]), ([0, 1], [0, 10**9]), ([0, -1], [0, 1]), ([0, 0.5], [0, 1]), ([0, 64], [0, 1])],
)
def test_exit_prediction_validates_exit_indices(estimated, true):
    started = time.perf_counter()
    with pytest.raises(ValueError, match="exit indices must be"):
        metrics.exit_prediction(np.asarray(estimated), np.asarray(true))
    assert time.perf_counter() - started < 1.0


def test_exit_indices_within_bounds_still_work():
    result = metrics.exit_prediction(np.array([0.0, 1.0, 63.0]), np.array([0, 1, 1]))
    assert result["accuracy"] == pytest.approx(2 / 3) and len(result["confusion"][0]) == 64
    with pytest.raises(ValueError, match="exit indices must be"):
        metrics.best_boundary_accuracy([1.0, 2.0], [0, 10**9])


# --- the command line ---------------------------------------------------------------------------------------


def _blocked(tmp_path) -> Path:
    """An output path that cannot be created: its parent is a regular file."""
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "out"


@pytest.mark.parametrize(
    "command,module,function",
    [
        (["slowdown", "--checkpoint", "model"], "mexjax.attacks.slowdown", "run"),
        (["train-victim"], "mexjax.victim", "train_victim"),
        (["demo"], "mexjax.demo", "run"),
    ],
)
def test_output_folder_is_checked_before_any_work(tmp_path, monkeypatch, capsys, command, module, function):
    import importlib

    calls = []
    monkeypatch.setattr(importlib.import_module(module), function, lambda *a, **k: calls.append(a))
    assert cli.main([*command, "--out", str(_blocked(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mexjax: error: cannot write the output folder") and err.count("\n") == 1
    assert not calls


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    from mexjax.checkpoint import CheckpointError

    argv = ["slowdown", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "sd")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("mexjax: error: no saved model at") and err.count("\n") == 1
    assert "Traceback" not in err and "--debug" in err
    with pytest.raises(CheckpointError):
        cli.main([*argv, "--debug"])
    with pytest.raises(CheckpointError):
        cli.main(["--debug", *argv])


def test_cli_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    from mexjax import demo

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(demo, "run", broken)
    with pytest.raises(KeyError):
        cli.main(["demo", "--out", str(tmp_path / "demo")])


def test_library_errors_count_as_user_errors():
    from mexjax import oracle

    assert cli._is_user_error(oracle.BudgetExhausted("budget spent", None))
    assert cli._is_user_error(FileNotFoundError("x")) and cli._is_user_error(NotImplementedError())
    assert not cli._is_user_error(KeyError("x")) and not cli._is_user_error(RuntimeError("x"))


def test_data_command_fails_on_an_unknown_name(tmp_path, capsys):
    assert cli.main(["data", "bogus", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mexjax: error: bogus/train: unknown dataset 'bogus'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as raised:
        cli.main(["data", "--bogus"])
    assert raised.value.code == 2


def test_python_dash_m_exits_non_zero_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mexjax", "data", "bogus", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 1
    assert done.stderr.startswith("mexjax: error: ") and done.stderr.count("\n") == 1
