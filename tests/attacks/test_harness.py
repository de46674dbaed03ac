"""The extraction harness: any attack x any defended victim -> one record."""

import numpy as np
import pytest

from mexjax import defenses, oracle
from mexjax.attacks import steal
from tests.train.test_fit import _toy


def _victim(toy_victim, name="none", defense=None):
    net, variables, _ = toy_victim
    return oracle.DeployedModel(net, variables, np.array([0.9, 0.9], np.float32), defense, name=name)


@pytest.mark.parametrize("attack", steal.harness.ATTACKS)
def test_every_attack_gives_one_record(toy_victim, attack):
    test = toy_victim[2]
    budget = 96 if attack == "knockoff" else 2 * 8 * 7  # two data-free iterations of batch 8
    record = steal.extract(
        _victim(toy_victim, "dcp", defenses.dcp(gate=0.99)),
        attack,
        budget=budget,
        test_images=test.images[:40],
        test_labels=test.labels[:40],
        pool=_toy(96, seed=3).images,
        student_arch="vgg16",
        student_width=0.125,
        steal_config=steal.StealConfig(arch="vgg16", width=0.125, num_exits=2, use_timing=False, epochs=1),
        data_free_config=steal.DataFreeConfig(batch_size=8),
        progress=False,
    )
    assert record["attack"] == attack and record["defense"] == "dcp" and record["test_images"] == 40
    assert record["queries"] == budget and record["budget"] == budget
    for key in ("victim_accuracy", "stolen_accuracy", "fidelity"):
        assert 0 <= record[key] <= 1
    assert record["victim_accuracy"] >= 0.9  # the toy victim, deployed with DCP, keeps its top-1
    assert record["seconds"] > 0 and record["queries_per_second"] > 0


def test_deployed_answers_apply_the_defense(toy_victim):
    images = toy_victim[2].images[:16]
    plain = _victim(toy_victim).answer(images)[1]
    guarded = _victim(toy_victim, "rs", defenses.reverse_sigmoid(0.5, 0.8)).answer(images)[1]
    np.testing.assert_allclose(guarded, defenses.reverse_sigmoid(0.5, 0.8).apply(plain, ())[0], rtol=1e-5)


def test_harness_bad_input(toy_victim):
    test = toy_victim[2]
    kwargs = dict(budget=64, test_images=test.images[:8], test_labels=test.labels[:8], progress=False)
    with pytest.raises(ValueError, match="attack must be"):
        steal.extract(_victim(toy_victim), "jbda", **kwargs)
    with pytest.raises(ValueError, match="pool of at least"):
        steal.extract(_victim(toy_victim), "knockoff", pool=test.images[:10], **kwargs)
