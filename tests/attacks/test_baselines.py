"""The stealing baselines: KnockoffNets, Noise and ES Attack on the tiny victim."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import nets
from mexjax.attacks import steal
from mexjax.attacks.steal import baselines
from tests.attacks.conftest import tiny_oracle

CONFIG = steal.StealConfig(width=0.125, epochs=2, batch_size=32, num_exits=3)


def test_knockoff_is_the_baseline_on_natural_queries(victim_setup):
    victim = tiny_oracle(victim_setup)
    result = steal.knockoff(victim, victim_setup[3][:64], CONFIG, progress=False)
    assert result.method == "knockoff" and result.estimated_exits is None
    assert victim.used == 64 and result.passes == 1 and "global threshold" in result.thresholds_how
    np.testing.assert_array_equal(result.query_images, victim_setup[3][:64])


def test_baselines_need_the_number_of_exits(victim_setup):
    no_k = steal.StealConfig(width=0.125)
    for call in (
        lambda: steal.knockoff(tiny_oracle(victim_setup), victim_setup[3][:64], no_k),
        lambda: steal.noise_attack(tiny_oracle(victim_setup), 64, no_k),
        lambda: steal.es_attack(tiny_oracle(victim_setup), 64, no_k),
    ):
        with pytest.raises(ValueError, match="num_exits"):
            call()


def test_noise_attack_queries_noise_within_the_budget(victim_setup):
    victim = tiny_oracle(victim_setup)
    result = steal.noise_attack(victim, 64, CONFIG, kind="gaussian", mean=0.5, std=0.1, progress=False)
    assert result.method == "noise" and victim.used == 64 and result.net.num_exits == 3
    images = result.query_images.astype(np.float32) / 255
    assert (
        images.shape == (64, 32, 32, 3) and abs(images.mean() - 0.5) < 0.02 and abs(images.std() - 0.1) < 0.02
    )


def test_synthesis_moves_the_student_towards_its_targets(victim_setup):
    net = victim_setup[0]
    variables = net.init(jax.random.key(3))
    key = jax.random.key(4)
    _, k_target = jax.random.split(key)
    target = jax.random.dirichlet(k_target, jnp.ones(net.num_classes, jnp.float32), (16,))

    def kl(images):
        log_s = jax.nn.log_softmax(net.apply(variables, images)[-1], axis=-1)
        return float(jnp.mean(jnp.sum(target * (jnp.log(target) - log_s), axis=-1)))

    start = baselines._synthesize(net, variables, key, n=16, steps=0, step_size=0.1, alpha=1.0)
    tuned = baselines._synthesize(net, variables, key, n=16, steps=40, step_size=0.1, alpha=1.0)
    assert float(jnp.min(tuned)) >= 0.0 and float(jnp.max(tuned)) <= 1.0
    assert kl(tuned) < 0.5 * kl(start)  # same start and targets: the optimization is what helped


@pytest.mark.slow  # ES Attack's rounds are covered by the committed Table 1 cpu cells (steal_table1_cpu.*)
def test_es_attack_rounds_spend_the_budget(victim_setup, tmp_path):
    victim = tiny_oracle(victim_setup)
    esa = steal.ESAConfig(rounds=3, steps=5, epochs_per_round=1, synth_batch=32)
    result = steal.es_attack(victim, 96, CONFIG, esa, workdir=tmp_path / "esa", progress=False)
    assert result.method == "esa" and victim.used == 96 and result.answered == 96
    assert result.query_images.shape == (96, 32, 32, 3) and result.query_images.dtype == np.uint8
    assert [r["round"] for r in result.history] == [0, 1, 2]
    assert (tmp_path / "esa" / "round_02" / "metrics.jsonl").exists()
    assert result.thresholds.shape == (2,) and isinstance(result.net, nets.MultiExitNet)
    # rounds after the first are synthesized, not uniform noise: their pixel histogram differs
    first, later = result.query_images[:32], result.query_images[32:]
    assert abs(float(first.std()) - float(later.std())) > 5


def test_es_attack_stops_at_the_budget(victim_setup):
    victim = tiny_oracle(victim_setup, budget=50)
    esa = steal.ESAConfig(rounds=3, steps=2, epochs_per_round=1, synth_batch=32)
    with pytest.warns(UserWarning, match="budget exhausted"):
        result = steal.es_attack(victim, 96, CONFIG, esa, progress=False)
    assert result.budget_exhausted and result.answered == 50 and victim.remaining == 0
    assert [r["round"] for r in result.history] == [0, 1]


def test_esa_config_checks():
    with pytest.raises(ValueError, match="rounds"):
        steal.ESAConfig(rounds=0)
    with pytest.raises(ValueError, match="step_size"):
        steal.ESAConfig(step_size=0.0)
    with pytest.raises(ValueError, match="cannot be split"):
        steal.es_attack(None, 2, CONFIG, steal.ESAConfig(rounds=3))
