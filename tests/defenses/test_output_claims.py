"""The claim of the output defenses: reverse sigmoid and DCP lower what a KnockoffNets attacker steals.

The paper (METHODS §6) claims that perturbing the answered probabilities (reverse sigmoid on every
answer; DCP only on answers below a confidence gate) lowers the fidelity of a KnockoffNets copy while
the victim's top-1 answers stay as they were. Here tiny two-exit victims are stolen twice with the same
queries, student seeds, query budget and training: once through a plain oracle, once through
`oracle.Oracle(..., defense=...)`, and the two students' fidelities (agreement of the student's last
exit with the deployed victim's top-1 on held-out images) are compared. A tiny student either learns a
class or misses it, so a single run moves in steps of a quarter; every comparison averages a few
students (different student seeds and query draws) so that one lucky run cannot decide it.
"""

import numpy as np
import pytest

from mexjax import defenses, metrics, nets, oracle, train
from mexjax.attacks import steal
from tests.train.test_fit import _toy

ARCH = "halfalexnet"  # quick to compile; victims and students share it
CONFIG = steal.StealConfig(
    arch=ARCH, width=0.125, num_exits=2, use_timing=False, epochs=3, learning_rate=0.01, batch_size=32
)
BUDGET = 192  # KnockoffNets queries per student
THRESHOLDS = np.array([0.9], np.float32)
TIMING = oracle.SimulatedTiming(seconds_per_flop=1e-12)  # the clock plays no part in KnockoffNets
VICTIM_ROUNDS = 3
HELD_OUT = _toy(128, seed=1)  # the victim's task, never queried
SEEDS = (0, 1)  # student and query-draw seeds of the students each comparison averages


def train_victim(top: float) -> tuple[nets.MultiExitNet, dict]:
    """A victim of the 4-class toy task, trained towards `top` on the true class (1.0: one-hot, a
    victim sure of nearly every answer; below 1: label smoothing, a victim that answers unsure).

    It is trained by the students' own distillation step and config (rounds warm-started from the
    last), so victim and students share one compiled training step."""
    net = nets.build(ARCH, num_classes=4, num_exits=CONFIG.num_exits, width=CONFIG.width)
    task = _toy(BUDGET)
    targets = np.where(np.eye(4, dtype=bool)[task.labels], top, (1.0 - top) / 3).astype(np.float32)
    variables = None
    for _ in range(VICTIM_ROUNDS):
        variables, _ = steal.student_training.train_student(
            net, task.images, targets, None, CONFIG, variables=variables, progress=False
        )
    return net, variables


def blended_pool(seed: int) -> np.ndarray:
    """KnockoffNets queries off the victim's task: two toy images of random classes blended 30-70 %."""
    rng = np.random.default_rng(seed)
    a, b = _toy(BUDGET, seed=100 + seed).images, _toy(BUDGET, seed=200 + seed).images
    w = rng.uniform(0.3, 0.7, (BUDGET, 1, 1, 1))
    return np.round(w * a + (1 - w) * b[rng.permutation(BUDGET)]).astype(np.uint8)


def toy_pool(seed: int) -> np.ndarray:
    """KnockoffNets queries from the victim's task (fresh draws, not the victim's training images)."""
    return _toy(BUDGET, seed=3 + seed).images


def victim_top1(net, variables) -> np.ndarray:
    """The deployed victim's top-1 on the held-out images (evaluation: costs no query)."""
    victim = oracle.DeployedModel(net, variables, THRESHOLDS)
    return victim.answer(HELD_OUT.images)[1].argmax(-1)


def knockoff_fidelity(net, variables, reference, queries, seed: int, defense=None) -> float:
    """Steal the victim with KnockoffNets through an oracle answering with `defense` (None: plain);
    the student's last-exit agreement with `reference` (the victim's top-1) on the held-out images."""
    target = oracle.Oracle(net, variables, THRESHOLDS, budget=BUDGET, timing=TIMING, defense=defense)
    config = steal.StealConfig(**{**vars(CONFIG), "seed": seed})
    result = steal.knockoff(target, queries, config, progress=False)
    assert target.used == BUDGET
    stolen = train.predict(result.net, result.variables, HELD_OUT.images)[-1].argmax(-1)
    return metrics.fidelity(stolen, reference)


def mean_fidelity(setup, pool, seeds, defense=None) -> float:
    """`knockoff_fidelity` averaged over students, student `s` seeded `s` and querying `pool(s)`."""
    net, variables, reference = setup
    return float(np.mean([knockoff_fidelity(net, variables, reference, pool(s), s, defense) for s in seeds]))


@pytest.fixture(scope="module")
def sure_victim():
    net, variables = train_victim(1.0)
    return net, variables, victim_top1(net, variables)


@pytest.fixture(scope="module")
def unsure_victim():
    net, variables = train_victim(0.7)
    return net, variables, victim_top1(net, variables)


def keeps_top1(setup, defense) -> bool:
    """Whether the deployed victim's top-1 on the held-out images is the same with `defense`."""
    net, variables, reference = setup
    guarded = oracle.DeployedModel(net, variables, THRESHOLDS, defense)
    return bool(np.array_equal(guarded.answer(HELD_OUT.images)[1].argmax(-1), reference))


def test_reverse_sigmoid_lowers_knockoff_fidelity(sure_victim):
    """Reverse sigmoid at its default strength (beta 0.7, gamma 0.4) on every answer of a victim sure
    of nearly every answer, queried with blended images off its task: the KnockoffNets copy agrees
    less with the victim, whose own top-1 answers do not change. (The perturbation squeezes a sure
    answer to about 0.4 against 0.2 for each other class, which a student learns far more slowly
    from than from the plain answer under the same queries and epochs.)"""
    defense = defenses.reverse_sigmoid()
    assert keeps_top1(sure_victim, defense)
    plain = mean_fidelity(sure_victim, blended_pool, SEEDS)
    guarded = mean_fidelity(sure_victim, blended_pool, SEEDS, defense)
    # plain - guarded (each the mean of 2 students) over 10 seed pairs (seeds 0-19), 2026-11-30:
    # mean 0.465, sd 0.121, smallest 0.293; margin = mean - 3 sd = 0.101
    assert plain - guarded >= 0.10, (plain, guarded)


def test_dcp_lowers_knockoff_fidelity_of_an_unsure_victim(unsure_victim):
    """DCP perturbs only answers below its confidence gate, so it can only act against a victim that
    answers unsure: here one trained on smoothed labels, whose every answer to the KnockoffNets queries
    is below the gate (0.9), so DCP perturbs them all; its top-1 answers do not change.

    What does not hold at this scale, measured on 2026-11-30 with the setup of these tests:
    - against the sure victim of the reverse sigmoid test (4 % of its answers below the gate), DCP at
      its defaults (gate 0.9, beta 0.7, gamma 0.4) leaves the copy as good as without it (single
      students, seeds 0-9: plain - guarded mean -0.016, sd 0.160; 8 of 10 copies identical);
    - against the unsure victim, DCP at its default strength lowers the fidelity on average but not
      reliably (seeds 0-29 in pairs: mean 0.233, sd 0.156, three pairs at 0; mean - 3 sd < 0): at
      0.6-0.7 confidence the default perturbation keeps a clear margin for the top-1 class.
    So the test asserts DCP at the strength beta = gamma = 0.9 (the answers below the gate become
    nearly flat while keeping their top-1), against the unsure victim."""
    net, variables, _ = unsure_victim
    gate = 0.9
    defense = defenses.dcp(gate=gate, beta=0.9, gamma=0.9)
    assert keeps_top1(unsure_victim, defense)
    answers = oracle.DeployedModel(net, variables, THRESHOLDS).answer(toy_pool(0))[1]
    assert np.mean(answers.max(-1) < gate) > 0.9  # DCP acts on (nearly) every answer
    plain = mean_fidelity(unsure_victim, toy_pool, SEEDS)
    guarded = mean_fidelity(unsure_victim, toy_pool, SEEDS, defense)
    # plain - guarded (each the mean of 2 students) over 15 seed pairs (seeds 0-29), 2026-11-30:
    # mean 0.732, sd 0.079, smallest 0.625; margin = mean - 3 sd = 0.497
    assert plain - guarded >= 0.49, (plain, guarded)
