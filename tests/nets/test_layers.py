"""The convolution layers: the same numbers, gradients, variables and errors as flax's nn.Conv (the
depthwise layer against the grouped nn.Conv; Conv, which runs inputs smaller than its kernel as a matrix
product), and the backbones' max pooling against nn.max_pool."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax.nets._layers import Conv, DepthwiseConv


def _pair(channels, stride, padding="SAME", dtype=None):
    kw = dict(
        features=channels,
        kernel_size=(3, 3),
        strides=(stride, stride),
        padding=padding,
        feature_group_count=channels,
        use_bias=False,
        dtype=dtype,
        kernel_init=nn.initializers.kaiming_normal(),
    )
    return nn.Conv(**kw), DepthwiseConv(**kw)


def _assert_same_gradients(reference, layer, variables, x):
    """Gradients of a loss through `layer` w.r.t. its variables and input equal those through `reference`."""

    def loss(module):
        return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

    want = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
    got = jax.grad(loss(layer), argnums=(0, 1))(variables, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_depthwise_matches_the_grouped_convolution(stride, size, padding):
    x = jax.random.normal(jax.random.key(0), (2, size, size, 5))
    reference, depthwise = _pair(5, stride, padding)
    variables = reference.init(jax.random.key(1), x)
    own = depthwise.init(jax.random.key(1), x)
    # Same parameter name, shape and initial values: checkpoints and quantization see no difference.
    assert jax.tree.structure(own) == jax.tree.structure(variables)
    np.testing.assert_array_equal(own["params"]["kernel"], variables["params"]["kernel"])
    want, got = reference.apply(variables, x), depthwise.apply(variables, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    _assert_same_gradients(reference, depthwise, variables, x)


def test_depthwise_computes_in_the_requested_dtype():
    x = jax.random.normal(jax.random.key(0), (1, 6, 6, 4))
    reference, depthwise = _pair(4, 1, dtype=jnp.bfloat16)
    variables = reference.init(jax.random.key(1), x)
    got = depthwise.apply(variables, x)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), reference.apply(variables, x), atol=0.1)


def test_depthwise_rejects_what_it_does_not_compute():
    x = jnp.zeros((1, 6, 6, 4))
    with pytest.raises(ValueError, match="input channels"):
        DepthwiseConv(4, (3, 3), feature_group_count=4).init(jax.random.key(0), jnp.zeros((1, 6, 6, 3)))
    with pytest.raises(NotImplementedError, match="bias"):
        DepthwiseConv(4, (3, 3), feature_group_count=4, use_bias=True).init(jax.random.key(0), x)


def _conv_pair(kernel, stride, padding, dtype=None):
    kw = dict(
        features=6,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        use_bias=False,
        dtype=dtype,
        kernel_init=nn.initializers.kaiming_normal(),
    )
    return nn.Conv(**kw), Conv(**kw)


def _uses_xla_convolution(layer, variables, x) -> bool:
    return "conv_general_dilated" in str(jax.make_jaxpr(layer.apply)(variables, x))


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_matches_flax_and_runs_small_inputs_as_a_matrix_product(kernel, size, stride, padding):
    if padding == "VALID" and size < kernel:
        pytest.skip("no output")
    x = jax.random.normal(jax.random.key(0), (3, size, size, 4))
    reference, conv = _conv_pair(kernel, stride, padding)
    variables = reference.init(jax.random.key(1), x)
    own = conv.init(jax.random.key(1), x)
    assert jax.tree.structure(own) == jax.tree.structure(variables)
    np.testing.assert_array_equal(own["params"]["kernel"], variables["params"]["kernel"])
    want, got = reference.apply(variables, x), conv.apply(variables, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # XLA's own convolution only where it is not slow on CPU: inputs at least as large as the kernel
    assert _uses_xla_convolution(conv, variables, x) == (size >= kernel)
    _assert_same_gradients(reference, conv, variables, x)


def test_conv_keeps_nn_conv_parameter_names_in_a_backbone():
    """Checkpoints written before the layer existed load: its parameters are named as nn.Conv's."""
    import re

    from mexjax import nets

    variables = nets.build("vgg16", num_classes=4, num_exits=2, width=0.0625).abstract_variables()
    paths = [path for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])]
    names = {str(getattr(key, "key", key)) for path in paths for key in path}
    convs = {name for name in names if "Conv" in name}
    assert "Conv_0" in convs and all(re.fullmatch(r"Conv_\d+", name) for name in convs), convs


def test_conv_computes_in_the_requested_dtype_and_rejects_what_it_does_not_compute():
    x = jax.random.normal(jax.random.key(0), (1, 2, 2, 4))
    reference, conv = _conv_pair(3, 1, "SAME", dtype=jnp.bfloat16)
    variables = reference.init(jax.random.key(1), x)
    got = conv.apply(variables, x)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), reference.apply(variables, x), atol=0.1)
    with pytest.raises(NotImplementedError, match="groups"):
        Conv(4, (3, 3), feature_group_count=2).init(jax.random.key(0), x)
    with pytest.raises(NotImplementedError, match="bias"):
        Conv(4, (3, 3), use_bias=True).init(jax.random.key(0), x)
    with pytest.raises(NotImplementedError, match="dilation"):
        Conv(4, (3, 3), use_bias=False, kernel_dilation=2).init(jax.random.key(0), x)


@pytest.mark.parametrize("size, k", [(8, 2), (7, 2), (32, 8), (9, 4)])
def test_max_pool_matches_flax_values_and_gradients(size, k):
    from mexjax.nets._layers import _max_pool

    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    np.testing.assert_array_equal(_max_pool(x, k), nn.max_pool(x, (k, k), (k, k)))
    grad_own = jax.grad(lambda x: jnp.sum(jnp.sin(_max_pool(x, k))))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(jnp.sin(nn.max_pool(x, (k, k), (k, k)))))(x)
    np.testing.assert_allclose(grad_own, grad_ref, rtol=1e-6, atol=1e-7)
    assert _max_pool(x.astype(jnp.bfloat16), k).dtype == jnp.bfloat16
