"""The black-box oracle: answers, budget accounting, timing modes, and what it never reveals."""

import dataclasses

import jax
import numpy as np
import pytest

from mexjax import exits, metrics, nets, oracle


@pytest.fixture(scope="module")
def victim():
    net = nets.build("vgg16", num_classes=5, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, images)))
    thresholds = np.quantile(conf[:-1], [0.6, 0.5], axis=1).diagonal().astype(np.float32)
    return net, variables, thresholds, images


def test_answers_equal_the_victims_early_exit(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=100)
    result = o.query(images[:10])
    _, probs = net.runner().policy(variables, images[:10], thresholds)
    np.testing.assert_array_equal(result.outputs, probs)
    assert result.runtimes.shape == (10,) and np.all(result.runtimes > 0)
    assert result.timing == "measured" and result.passes == 1 and o.used == 10
    assert not any("exit" in f.name for f in dataclasses.fields(result))  # never the exit index


def test_warmup_compiles_without_spending_a_query(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=3)
    o.warmup()
    assert o.used == 0 and o.remaining == 3
    result = o.query(images[:3])
    _, probs = net.runner().policy(variables, images[:3], thresholds)
    np.testing.assert_array_equal(result.outputs, probs)
    simulated = oracle.Oracle(net, variables, thresholds, budget=1, timing=oracle.SimulatedTiming())
    simulated.warmup()
    assert simulated.used == 0


@pytest.mark.parametrize("passes", [1.5, 2.0, "2", True, 0, -1])
def test_bad_passes_are_refused_before_any_charge(victim, passes):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=100)
    with pytest.raises(ValueError, match="passes must be a whole number"):
        o.query(images[:3], passes=passes)
    assert o.used == 0
    assert o.query(images[:3], passes=np.int64(2)).pass_runtimes.shape == (2, 3) and o.used == 6


def test_budget_counts_repeats_and_keeps_partial_answers(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=25, timing=oracle.SimulatedTiming())
    first = o.query(images[:10], passes=2)
    assert o.used == 20 and o.remaining == 5
    with pytest.raises(oracle.BudgetExhausted, match="25 queries allowed") as caught:
        o.query(images[10:20], passes=2)
    partial = caught.value.answered
    assert len(partial) == 2 and o.used == 24  # two more images, two passes each
    np.testing.assert_array_equal(partial.outputs, o_probs(victim, images[10:12]))
    assert len(o.query(images[:1])) == 1  # the last query
    with pytest.raises(oracle.BudgetExhausted):
        o.query(images[:1])
    assert len(first) == 10


def o_probs(victim, images):
    net, variables, thresholds, _ = victim
    return net.runner().policy(variables, images, thresholds)[1]


def test_labels_only_output(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=10, output="labels")
    result = o.query(images[:5])
    assert result.outputs.dtype == np.int32 and result.output == "labels"
    np.testing.assert_array_equal(result.outputs, o_probs(victim, images[:5]).argmax(-1))


def test_simulated_timing_separates_exits(victim):
    net, variables, thresholds, images = victim
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-9, noise="lognormal", scale=0.02)
    o = oracle.Oracle(net, variables, thresholds, budget=1000, timing=timing, key=jax.random.key(1))
    result = o.query(images, passes=3)
    assert result.timing == "simulated" and result.passes == 3
    true = oracle.true_exits(o, images)
    assert len(np.unique(true)) == 3
    est, k = exits.estimate_exits(result.runtimes)
    assert k == 3 and metrics.exit_prediction(est, true)["accuracy"] == 1.0


@pytest.mark.wallclock
def test_measured_timing_orders_the_exits(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=10_000)
    result = o.query(images, passes=5)
    true = oracle.true_exits(o, images)
    medians = [np.median(result.runtimes[true == e]) for e in range(3)]
    assert medians[0] < medians[1] < medians[2], medians


def test_bad_requests(victim):
    net, variables, thresholds, images = victim
    o = oracle.Oracle(net, variables, thresholds, budget=10)
    with pytest.raises(ValueError, match="expected images"):
        o.query(np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="passes"):
        o.query(images[:1], passes=0)
    assert o.used == 0
    with pytest.raises(ValueError, match="thresholds"):
        oracle.Oracle(net, variables, [0.5], budget=10)
    with pytest.raises(ValueError, match="budget"):
        oracle.Oracle(net, variables, thresholds, budget=-1)
    with pytest.raises(ValueError, match="output"):
        oracle.Oracle(net, variables, thresholds, budget=1, output="logits")


def test_every_pass_is_kept_in_measurement_order(victim):
    net, variables, thresholds, images = victim
    for timing in ("measured", oracle.SimulatedTiming(seconds_per_flop=1e-9)):
        o = oracle.Oracle(net, variables, thresholds, budget=100, timing=timing)
        result = o.query(images[:8], passes=3)
        assert result.pass_runtimes.shape == (3, 8) and np.all(result.pass_runtimes > 0)
        np.testing.assert_array_equal(result.runtimes, result.pass_runtimes.min(axis=0))
    measured = oracle.Oracle(net, variables, thresholds, budget=100).query(images[:8], passes=4)
    order = measured.pass_order  # pass 0 in image order, later passes shuffled afresh
    np.testing.assert_array_equal(order[0], np.arange(8))
    assert all(sorted(row) == list(range(8)) for row in order)
    assert len({tuple(row) for row in order[1:]}) > 1


def test_measurement_order():
    rng = np.random.default_rng(0)
    order = oracle.measurement_order(20, 50, rng)
    assert order.shape == (20, 50)
    np.testing.assert_array_equal(order[0], np.arange(50))
    np.testing.assert_array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(50), (20, 50)))
    # every later pass a fresh order: an image's place is not kept from pass to pass
    place = np.argsort(order[1:], axis=1)  # [pass, image] -> its place in that pass
    assert np.mean(place[0] == place[1]) < 0.2 and np.corrcoef(place[0], place[1])[0, 1] < 0.5


def test_lean_path_answers_bit_for_bit_as_the_jit_path(victim):
    net, variables, thresholds, images = victim
    runner = net.runner(tile=1)
    x = np.asarray(net.check_inputs(images[:6]))
    lean = runner.lean(variables, x[:1])
    for i in range(6):
        row = runner.pad_rows(x[i : i + 1], 1)
        exit_a, probs_a = lean(row, thresholds)
        exit_b, probs_b = runner.early_exit_single(variables, images[i : i + 1], thresholds)
        assert exit_a == exit_b
        np.testing.assert_array_equal(probs_a, probs_b)


def test_the_oracle_is_a_black_box_and_deployed_gives_its_model(victim):
    """Attacks are typed against `oracle.BlackBox`; only the owner's side and evaluation code read the
    model behind it (`oracle.deployed`), defense included."""
    net, variables, thresholds, _ = victim
    box = oracle.Oracle(net, variables, thresholds, budget=3, timing=oracle.SimulatedTiming())
    assert isinstance(box, oracle.BlackBox)
    assert not isinstance(object(), oracle.BlackBox)
    model = oracle.deployed(box)
    assert model.net is net and model.variables is variables and model.defense is None
    np.testing.assert_array_equal(model.thresholds, thresholds)
