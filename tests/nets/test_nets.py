"""Multi-exit backbones: construction, stage functions, FLOPs, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import nets
from mexjax.nets import _arch

TINY = dict(num_classes=5, width=0.125)


@pytest.fixture(scope="module", params=nets.ARCHS)
def tiny(request):
    net = nets.build(request.param, num_exits=4, **TINY)
    return net, net.init(jax.random.key(0))


def test_all_exits_shapes_and_variables(tiny):
    net, variables = tiny
    assert set(variables) == {"params", "batch_stats"}
    x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    logits = net.logits(variables, x)
    assert len(logits) == 4 and all(lg.shape == (3, 5) and lg.dtype == jnp.float32 for lg in logits)
    assert len(net.apply(variables, x, upto=2)) == 2


def test_stages_in_order_equal_the_full_pass_exactly(tiny):
    net, variables = tiny
    x = jax.random.uniform(jax.random.key(2), (6, 32, 32, 3))
    full = net.logits(variables, x)
    h = x
    for i in range(net.num_exits):
        h, logits = net.stage(i)(variables, h)
        np.testing.assert_array_equal(np.asarray(logits), np.asarray(full[i]))


def test_train_mode_updates_batch_stats_and_uses_dropout(tiny):
    net, variables = tiny
    x = jax.random.uniform(jax.random.key(3), (4, 32, 32, 3))
    logits, stats = net.apply(variables, x, train=True, dropout_key=jax.random.key(4))
    assert len(logits) == 4
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), stats, variables["batch_stats"])
    assert any(jax.tree_util.tree_leaves(changed))


def test_uint8_inputs_are_scaled(tiny):
    net, variables = tiny
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    a = net.logits(variables, x)
    b = net.logits(variables, x.astype(np.float32) / 255.0)
    for u, v in zip(a, b, strict=True):
        scale = float(np.abs(np.asarray(v)).max())
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-5 * scale)


def test_reference_ic_placement_and_cost_fractions():
    # METHODS §1: reference cost fractions with 7 exits (VGG16, ResNet56), to about 0.005.
    expected = {
        "vgg16": (0.126, 0.307, 0.487, 0.608, 0.788, 0.908, 1.0),
        "resnet56": (0.154, 0.305, 0.445, 0.595, 0.735, 0.888, 1.0),
    }
    for arch, fractions in expected.items():
        net = nets.build(arch, num_classes=10, num_exits=7)
        flops = nets.exit_flops(net)
        np.testing.assert_allclose(np.array(flops) / flops[-1], fractions, atol=0.006)
        assert net.spec.ic_units == _arch.REFERENCE_ICS[arch]


def test_full_network_flops_match_the_reference_counts():
    vgg = nets.exit_flops(nets.build("vgg16", num_classes=10, num_exits=7))[-1]
    resnet = nets.exit_flops(nets.build("resnet56", num_classes=10, num_exits=7))[-1]
    assert abs(vgg / 0.629e9 - 1) < 0.01 and abs(resnet / 0.253e9 - 1) < 0.01


@pytest.mark.parametrize("arch", nets.ARCHS)
@pytest.mark.parametrize("num_exits", [2, 3, 5, 6])
def test_other_exit_counts_spread_by_cost(arch, num_exits):
    net = nets.build(arch, num_classes=10, num_exits=num_exits)
    flops = np.array(nets.exit_flops(net), dtype=np.float64)
    assert len(flops) == num_exits and np.all(np.diff(flops) > 0)
    fractions = flops[:-1] / flops[-1]
    targets = np.arange(1, num_exits) / num_exits
    assert np.max(np.abs(fractions - targets)) < 0.1


@pytest.mark.parametrize("arch", nets.ALL_ARCHS)
def test_exit_flops_agree_with_xla_cost_analysis(arch):
    # XLA's convolutions count only kernel taps that touch the image and XLA adds elementwise work (BN,
    # ReLU, pools): the analytic count without padding taps must sit just below it at every exit. The
    # convolutions over inputs smaller than their kernel run as matrix products of the padded windows
    # (nets._layers.Conv), which multiply the padding taps too: there XLA may count up to the analytic
    # count with padding taps.
    net = nets.build(arch, num_classes=10, num_exits=6 if arch in nets.ARCHS else 3)
    variables = net.abstract_variables()
    h = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    xla, total = [], 0.0
    for i in range(net.num_exits):
        total += net.stage(i).lower(variables, h).cost_analysis()["flops"]
        h = jax.eval_shape(net.stage(i), variables, h)[0]
        xla.append(total)
    analytic = np.array(_arch.exit_flops(net.spec, padding=False), dtype=np.float64)
    padded = np.array(nets.exit_flops(net), dtype=np.float64)  # the reference count includes padding
    ratio = np.array(xla) / analytic
    assert np.all(padded >= analytic)
    assert np.all(ratio >= 1.0) and np.all(np.array(xla) < 1.06 * padded), ratio


def test_bfloat16_compute_option():
    net = nets.build("resnet56", num_exits=3, dtype="bfloat16", **TINY)
    variables = net.init(jax.random.key(0))
    assert jax.tree_util.tree_leaves(variables["params"])[0].dtype == jnp.float32
    logits = net.logits(variables, jnp.full((2, 32, 32, 3), 0.5, jnp.float32))
    assert logits[-1].dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits[-1])))


def test_width_scales_channels():
    half = nets.build("vgg16", num_classes=10, num_exits=4, width=0.5)
    assert [u.out_channels for u in half.spec.units][:3] == [32, 32, 64]
    assert half.spec.head_hidden == (256, 256)


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_exits must be an int in 1..7"):
        nets.build("vgg16", num_classes=10, num_exits=8)
    with pytest.raises(ValueError, match="num_exits"):
        nets.build("vgg16", num_classes=10, num_exits=0)
    with pytest.raises(ValueError, match="room for at most 5 exits"):
        nets.build("halfalexnet", num_classes=10, num_exits=6)
    with pytest.raises(ValueError, match="unknown arch 'alexnet'"):
        nets.build("alexnet", num_classes=10, num_exits=4)
    with pytest.raises(ValueError, match="no channels"):
        nets.build("resnet56", num_classes=10, num_exits=4, width=0.01)
    with pytest.raises(ValueError, match="num_classes"):
        nets.build("vgg16", num_classes=1, num_exits=4)
    with pytest.raises(ValueError, match="at least 32"):
        nets.build("vgg16", num_classes=10, num_exits=4, input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="dtype"):
        nets.build("vgg16", num_classes=10, num_exits=4, dtype="float64")


def test_bad_inputs_get_clear_errors(tiny):
    net, variables = tiny
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 32, 32, 3\]"):
        net.logits(variables, np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(TypeError, match="uint8 in \\[0, 255\\] or float32"):
        net.logits(variables, np.zeros((2, 32, 32, 3), np.int32))
    bad = np.zeros((2, 32, 32, 3), np.float32)
    bad[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.logits(variables, bad)
    with pytest.raises(IndexError, match="stage 4 does not exist"):
        net.stage(4)


@pytest.mark.parametrize("arch", nets.STUDENT_ARCHS)
def test_single_exit_students_and_their_penultimate_features(arch):
    net = nets.build(arch, num_exits=1, **TINY)
    variables = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (7, 32, 32, 3))
    (logits,) = net.logits(variables, x)
    features = net.features(variables, x, batch_size=3)  # batches of 3, 3 and 1
    assert features.shape == (7, net.feature_size) and features.dtype == np.float32
    head = variables["params"]["head"]
    last = head[max(head, key=lambda name: int(name.split("_")[-1]))]  # the head's last Dense
    np.testing.assert_allclose(features @ np.asarray(last["kernel"]) + np.asarray(last["bias"]),
                               np.asarray(logits), rtol=1e-4, atol=1e-4)  # fmt: skip
    assert nets.exit_flops(net) == [sum(u.flops for u in net.spec.units) + _arch.head_flops(net.spec)]


def test_student_backbones_match_their_published_shapes():
    resnet18 = nets.build("resnet18", num_classes=10, num_exits=1)
    assert [u.out_channels for u in resnet18.spec.units] == [64, 64, 64, 128, 128, 256, 256, 512, 512]
    assert abs(nets.exit_flops(resnet18)[-1] / 1.11e9 - 1) < 0.01  # 0.56 G multiply-adds on CIFAR
    alex = nets.build("halfalexnet", num_classes=10, num_exits=1)
    assert [(u.out_channels, u.kernel) for u in alex.spec.units] == [
        (48, 5),
        (128, 5),
        (192, 3),
        (192, 3),
        (128, 3),
    ]
    assert alex.spec.head_hidden == (512, 256) and alex.feature_size == 256
    assert alex.spec.units[-1].out_size == (4, 4)
