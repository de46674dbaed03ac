"""The depthwise layer: the same numbers, gradients, variables and errors as flax's grouped nn.Conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax.nets._layers import DepthwiseConv


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

    def loss(layer):
        return lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x)))

    want_grads = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
    got_grads = jax.grad(loss(depthwise), argnums=(0, 1))(variables, x)
    for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


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
