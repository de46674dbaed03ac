"""Exit assignment against a brute-force reference, and threshold validation."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mexjax import exits

# XLA on CPU flushes subnormals to zero (check_thresholds does the same for thresholds; tested below).
UNIT = st.floats(0, 1, width=32, allow_subnormal=False)


def _brute(conf, thresholds):
    out = []
    for row in conf:
        exit_ = len(row) - 1
        for i, t in enumerate(thresholds):
            if row[i] >= t:
                exit_ = i
                break
        out.append(exit_)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 7).flatmap(
        lambda k: st.tuples(
            hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.just(k)), elements=UNIT),
            hnp.arrays(np.float32, (k - 1,), elements=UNIT),
        )
    )
)
def test_assign_matches_brute_force(case):
    conf, thresholds = case
    got = np.asarray(exits.assign(jnp.asarray(conf), jnp.asarray(thresholds)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _brute(conf, thresholds))


def test_assign_edges():
    conf = jnp.asarray([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.2, 0.3]], jnp.float32)
    t = jnp.asarray([0.9, 0.5], jnp.float32)
    np.testing.assert_array_equal(np.asarray(exits.assign(conf, t)), [0, 1, 2])  # >= is inclusive
    np.testing.assert_array_equal(np.asarray(exits.assign(conf, jnp.zeros(2, jnp.float32))), [0, 0, 0])
    np.testing.assert_array_equal(np.asarray(exits.assign(conf, jnp.full(2, 1.0, jnp.float32))), [2, 2, 2])
    with pytest.raises(ValueError, match="thresholds"):
        exits.assign(conf, jnp.zeros(3, jnp.float32))


def test_confidence_and_select():
    logits = jnp.asarray([[0.0, 0.0], [10.0, 0.0]], jnp.float32)
    probs = exits.probabilities(logits)
    np.testing.assert_allclose(np.asarray(exits.confidence(probs)), [0.5, 1 / (1 + np.exp(-10))], rtol=1e-6)
    per_exit = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
    picked = exits.select(per_exit, jnp.asarray([1, 0, 1], jnp.int32))
    np.testing.assert_array_equal(np.asarray(picked), [[6, 7], [2, 3], [10, 11]])


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ([0.5], "needs 2 thresholds"),
        ([0.5, 1.2], "within \\[0, 1\\]"),
        ([0.5, np.nan], "finite"),
        ([-0.1, 0.3], "within"),
    ],
)
def test_check_thresholds(thresholds, message):
    with pytest.raises(ValueError, match=message):
        exits.check_thresholds(thresholds, 3)
    assert exits.check_thresholds([0.2, 1.0], 3).dtype == np.float32


def test_subnormal_thresholds_are_flushed_like_the_device_does():
    t = exits.check_thresholds([1e-45, 0.5], 3)
    assert t[0] == 0.0 and t[1] == np.float32(0.5)
    conf = jnp.zeros((1, 3), jnp.float32)
    assert int(exits.assign(conf, jnp.asarray(t))[0]) == 0
