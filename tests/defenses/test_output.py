"""Output perturbation defenses: reverse sigmoid, DCP, chaining, and their place in the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import defenses
from tests.attacks.conftest import tiny_oracle, victim_setup  # noqa: F401 (fixture)


def _probs(n=64, c=10, seed=0, temperature=1.0):
    logits = jax.random.normal(jax.random.key(seed), (n, c)) * 3.0 / temperature
    return jax.nn.softmax(logits, axis=-1)


def test_reverse_sigmoid_matches_its_formula_and_stays_a_distribution():
    p = _probs()
    beta, gamma = 0.5, 0.8
    out, state = defenses.reverse_sigmoid(beta, gamma).apply(p, ())
    y = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    raw = np.maximum(y - beta * (1 / (1 + np.exp(-gamma * np.log(y / (1 - y)))) - 0.5), 1e-6)
    np.testing.assert_allclose(out, raw / raw.sum(-1, keepdims=True), rtol=1e-4, atol=1e-7)
    assert state == () and bool(jnp.all(out > 0))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    # the logits an attacker recovers from the answer (log p - mean log p) move far
    recovered = lambda q: jnp.log(q) - jnp.mean(jnp.log(q), -1, keepdims=True)
    assert float(jnp.mean(jnp.abs(recovered(out) - recovered(p)))) > 1.0
    np.testing.assert_array_equal(defenses.reverse_sigmoid(0.0, 1.0).apply(p, ())[0].argmax(-1), p.argmax(-1))


def test_dcp_only_touches_unsure_answers():
    p = jnp.concatenate([_probs(32, temperature=0.1), _probs(32, seed=1, temperature=10.0)])
    gate = 0.9
    out, _ = defenses.dcp(gate=gate, beta=0.5, gamma=0.8).apply(p, ())
    sure = np.asarray(p.max(-1) >= gate)
    assert sure.any() and (~sure).any()
    np.testing.assert_array_equal(out[sure], p[sure])
    assert not np.allclose(out[~sure], p[~sure])
    np.testing.assert_allclose(
        out[~sure], defenses.reverse_sigmoid(0.5, 0.8).apply(p[~sure], ())[0], rtol=1e-6
    )


def test_chain_applies_in_order_and_jits():
    p = _probs()
    rs, gated = defenses.reverse_sigmoid(0.3, 0.5), defenses.dcp(0.8, 0.6, 0.7)
    both = defenses.chain(rs, gated)
    state = both.init()
    out, new_state = jax.jit(both.apply)(p, state)
    expected = gated.apply(rs.apply(p, ())[0], ())[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert new_state == ((), ())
    np.testing.assert_array_equal(defenses.IDENTITY.apply(p, ())[0], p)


def test_bad_defense_input():
    with pytest.raises(ValueError, match="beta >= 0 and gamma > 0"):
        defenses.reverse_sigmoid(beta=-0.1)
    with pytest.raises(ValueError, match="gate"):
        defenses.dcp(gate=1.5)
    logits = jax.random.normal(jax.random.key(0), (4, 10)) * 3
    with pytest.raises(ValueError, match="not on logits"):
        defenses.check_probabilities(logits)
    for defense in (defenses.reverse_sigmoid(), defenses.dcp()):
        with pytest.raises(ValueError, match="not on logits"):
            defense.apply(logits, ())
    defenses.check_probabilities(_probs(4))  # probabilities pass


def test_oracle_answers_through_the_defense(victim_setup):  # noqa: F811
    plain = tiny_oracle(victim_setup)
    net, variables, thresholds, queries, timing = victim_setup
    from mexjax import oracle

    defended = oracle.Oracle(
        net, variables, thresholds, budget=1000, timing=timing, defense=defenses.reverse_sigmoid(0.5, 0.8)
    )
    a, b = plain.query(queries[:16]), defended.query(queries[:16])
    np.testing.assert_allclose(
        b.outputs, defenses.reverse_sigmoid(0.5, 0.8).apply(jnp.asarray(a.outputs), ())[0], rtol=1e-5
    )
    assert defended.used == 16
