"""The three inference paths agree exactly, and the batched path does not recompile after warm-up."""

import logging

import jax
import numpy as np
import pytest

from mexjax import exits, nets


def _runner(arch, tile, seed=0, num_exits=4):
    net = nets.build(arch, num_classes=6, num_exits=num_exits, width=0.125)
    variables = net.init(jax.random.key(seed))
    stages = tuple(net.stage(i) for i in range(net.num_exits))
    return net, variables, exits.ExitRunner(stages, tile=tile, buckets=(4 * tile, 16 * tile, 64 * tile))


# Probabilities of one row computed inside tiles of more than one row may differ in the last bits
# between paths on some CPUs (XLA picks vector kernels by the CPU's instruction set and the loop's
# trip count: 1.2e-7 on an AMD EPYC, 0 on the Intel machine of docs/benchmarks.md). tile=1, the timed
# batch-1 path, agrees bit for bit; larger tiles within PROBS_ATOL, exits exactly.
PROBS_ATOL = 1e-6


def _thresholds(runner, variables, x, seed):
    """Random thresholds spread over the range of confidences the net actually produces, each halfway
    between two neighbouring confidences: no row lies within float noise of a threshold, so the
    exits are the same on every CPU."""
    conf = np.asarray(exits.confidence(runner.all_exits(variables, x)))[:-1]
    rng = np.random.default_rng(seed)
    out = []
    for c in conf:
        values = np.unique(c)
        i = min(int(rng.uniform(0.2, 0.9) * len(values)), len(values) - 2)
        out.append(0.5 * (values[i] + values[i + 1]))
    return np.array(out, np.float32)


@pytest.mark.parametrize("arch", nets.ARCHS)
@pytest.mark.parametrize("tile", [1, 4])
def test_three_paths_agree_exactly(arch, tile):
    _, variables, runner = _runner(arch, tile)
    x = jax.random.uniform(jax.random.key(1), (37, 32, 32, 3))
    for seed in range(3):
        thresholds = _thresholds(runner, variables, x, seed)
        exit_a, probs_a = runner.policy(variables, x, thresholds)
        exit_c, probs_c = runner.early_exit_batched(variables, x, thresholds)
        singles = [runner.early_exit_single(variables, x[j : j + 1], thresholds) for j in range(len(x))]
        exit_b = np.array([e for e, _ in singles])
        probs_b = np.stack([p for _, p in singles])
        assert len(np.unique(exit_a)) >= 2, "thresholds should spread samples over exits"
        np.testing.assert_array_equal(exit_a, exit_c)
        np.testing.assert_array_equal(exit_a, exit_b)
        atol = 0.0 if tile == 1 else PROBS_ATOL
        np.testing.assert_allclose(probs_a, probs_c, rtol=0, atol=atol)
        np.testing.assert_allclose(probs_a, probs_b, rtol=0, atol=atol)


def test_tile_one_matches_a_plain_batch_one_stage_call():
    net, variables, runner = _runner("vgg16", 1)
    x = jax.random.uniform(jax.random.key(2), (1, 32, 32, 3))
    h, logits = x, None
    for i in range(net.num_exits):
        h, logits = net.stage(i)(variables, h)
    _, probs = runner.early_exit_single(variables, x, np.ones(net.num_exits - 1, np.float32))
    np.testing.assert_array_equal(probs, np.asarray(exits.probabilities(logits))[0])


def test_early_exit_really_stops(monkeypatch):
    net, variables, runner = _runner("resnet56", 1)
    calls = []
    fns = list(runner._fns)

    def spy(index, fn):
        def call(variables, h):
            calls.append(index)
            return fn(variables, h)

        return call

    wrapped = tuple(spy(i, f) for i, f in enumerate(fns))
    object.__setattr__(runner, "_fns", wrapped)
    x = jax.random.uniform(jax.random.key(3), (1, 32, 32, 3))
    exit_, _ = runner.early_exit_single(variables, x, np.zeros(net.num_exits - 1, np.float32))
    assert exit_ == 0 and calls == [0]
    calls.clear()
    thresholds = np.ones(net.num_exits - 1, np.float32)
    runner.early_exit_batched(
        variables, jax.random.uniform(jax.random.key(4), (9, 32, 32, 3)), thresholds * 0
    )
    assert calls == [0]  # everything left at exit 0: no later stage ran


def test_no_recompilation_after_warmup(caplog):
    _, variables, runner = _runner("vgg16", 1, num_exits=3)
    x = jax.random.uniform(jax.random.key(5), (50, 32, 32, 3))
    cases = [(x[: 20 + 10 * seed], _thresholds(runner, variables, x, seed)) for seed in range(4)]
    cases.append((x[:3], np.zeros(2, np.float32)))  # everything leaves at once
    cases.append((x, np.ones(2, np.float32)))  # everything runs to the end
    runner.warmup(variables, x[:1], max_batch=64)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        caplog.clear()
        for batch, thresholds in cases:
            runner.early_exit_batched(variables, batch, thresholds)
        compiles = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert compiles == [], compiles


def test_compile_log_is_observed(caplog):
    """Guards the test above: a fresh shape must show up as a compilation in the log."""
    _, variables, runner = _runner("vgg16", 1, num_exits=3)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        caplog.clear()
        runner.early_exit_batched(variables, np.zeros((5, 32, 32, 3), np.float32), np.ones(2, np.float32))
        assert any("Compiling" in r.getMessage() for r in caplog.records)


def test_runners_over_one_net_share_their_compiled_stages(caplog):
    """A new oracle or evaluation builds a new runner over the same net: it must not compile the
    stages again (a per-runner jit did: ~30 extra compiles per oracle in the extraction benchmark)."""
    net = nets.build("vgg16", num_classes=10, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    x = np.zeros((5, 32, 32, 3), np.float32)
    net.runner().all_exits(variables, x)

    def compiled_stages(runner):
        with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
            caplog.clear()
            runner.all_exits(variables, x)
            return [r.getMessage() for r in caplog.records if "Compiling jit(_tiled_stage)" in r.getMessage()]

    assert compiled_stages(net.runner()) == []  # a second runner over the net: nothing compiled
    assert len(compiled_stages(net.runner(tile=8))) == 3  # another tile is another program per stage
    stages = tuple(net.stage(i) for i in range(3))
    assert len(compiled_stages(exits.ExitRunner(stages))) == 3  # a runner without the net's cache


def test_nets_of_one_spec_share_what_was_compiled(caplog):
    """A net rebuilt from the same spec (a notebook cell run again, the next experiment cell, a loaded
    checkpoint) runs on the programs the first one compiled: all exits, the runner's stages, the
    oracle's lean timed path."""
    first = nets.build("vgg16", num_classes=10, num_exits=3, width=0.125)
    variables = first.init(jax.random.key(0))
    x = np.zeros((5, 32, 32, 3), np.float32)
    one = x[:1]
    thresholds = np.full(2, 0.5, np.float32)

    def use(net):
        net.logits(variables, x)
        net.runner().early_exit_batched(variables, x, thresholds)
        net.runner().lean(variables, one)(one, thresholds)

    use(first)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        caplog.clear()
        use(nets.build("vgg16", num_classes=10, num_exits=3, width=0.125))
        compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
    assert compiled == []
    other = nets.build("vgg16", num_classes=10, num_exits=3, width=0.25)  # another spec: its own programs
    assert other.stage(0) is not first.stage(0)


def test_batched_rejects_bad_thresholds():
    _, variables, runner = _runner("vgg16", 1, num_exits=3)
    x = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="needs 2 thresholds"):
        runner.early_exit_batched(variables, x, [0.5])
    with pytest.raises(ValueError, match="within"):
        runner.policy(variables, x, [0.5, 2.0])
    with pytest.raises(ValueError, match="multiples of tile"):
        exits.ExitRunner(runner.stages, tile=4, buckets=(6, 8))


def test_net_runner_checks_its_inputs():
    net = nets.build("vgg16", num_classes=3, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    runner = net.runner(tile=1, buckets=(4,))
    thresholds = np.full(2, 0.5, np.float32)
    with pytest.raises(ValueError, match="expected images of shape"):
        runner.early_exit_batched(variables, np.zeros((2, 28, 28, 3), np.float32), thresholds)
    bad = np.zeros((1, 32, 32, 3), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        runner.early_exit_single(variables, bad, thresholds)
    with pytest.raises(TypeError, match="uint8"):
        runner.policy(variables, np.zeros((2, 32, 32, 3), np.int64), thresholds)
    with pytest.raises(ValueError, match="one image"):
        runner.early_exit_single(variables, np.zeros((2, 32, 32, 3), np.float32), thresholds)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    exit_a, probs_a = runner.policy(variables, images, thresholds)  # uint8 accepted and scaled
    exit_c, probs_c = runner.early_exit_batched(variables, images, thresholds)
    np.testing.assert_array_equal(exit_a, exit_c)
    np.testing.assert_array_equal(probs_a, probs_c)
