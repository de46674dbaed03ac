"""One extraction experiment = any attack x any defended victim -> one result record.

The victim is an `oracle.DeployedModel` (a possibly quantized multi-exit net with its thresholds and an
optional output defense); `extract` puts it behind a fresh oracle with the given budget, runs one attack
(KnockoffNets on natural images, DFME or MAZE) and measures what the defender keeps and what the attacker
gets, all on the test set (`metrics.evaluate`): the victim's accuracy as deployed (early exit, defense
applied), the stolen model's accuracy (last exit) and its fidelity (agreement with the deployed victim's
answers), the queries spent and the wall time.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from mexjax import metrics, nets, oracle
from mexjax.attacks.steal.baselines import knockoff
from mexjax.attacks.steal.datafree import DataFreeConfig, data_free, maze_config
from mexjax.attacks.steal.student_training import StealConfig

ATTACKS = ("knockoff", "dfme", "maze")


def extract(
    victim: oracle.DeployedModel,
    attack: str,
    *,
    budget: int,
    test_images,
    test_labels,
    pool=None,
    student_arch: str = "resnet56",
    student_width: float = 0.25,
    student_exits: int = 2,
    steal_config: StealConfig | None = None,
    data_free_config: DataFreeConfig | None = None,
    progress: bool = True,
) -> dict:
    """Run `attack` ("knockoff" needs a `pool` of natural uint8 images, at least `budget` of them)."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}; got {attack!r}")
    timing = oracle.SimulatedTiming(seconds_per_flop=1e-12)  # the clock plays no part here
    target = oracle.Oracle(
        victim.net, victim.variables, victim.thresholds, budget=budget, timing=timing, defense=victim.defense
    )
    started = time.perf_counter()
    if attack == "knockoff":
        if pool is None or len(pool) < budget:
            raise ValueError(f"KnockoffNets needs a pool of at least budget = {budget} natural images")
        config = steal_config or StealConfig(
            arch=student_arch, width=student_width, num_exits=student_exits, use_timing=False, epochs=10
        )
        result = knockoff(target, np.asarray(pool[:budget]), config, progress=progress)
        student, variables = result.net, result.variables
    else:
        student = nets.build(
            student_arch, num_classes=victim.net.num_classes, num_exits=student_exits, width=student_width,
            input_shape=victim.net.input_shape,
        )  # fmt: skip
        config = data_free_config or (DataFreeConfig() if attack == "dfme" else maze_config())
        config = dataclasses.replace(config, method=attack, iterations=max(config.iterations, 10**9))
        result = data_free(target, student, config, progress=progress)
        variables = result.variables
    seconds = time.perf_counter() - started

    stolen = oracle.DeployedModel(student, variables)  # evaluated at its final exit
    scores = metrics.evaluate(stolen, test_images, test_labels, reference=victim)
    return {
        "defense": victim.name,
        "attack": attack,
        "victim_accuracy": scores["reference_accuracy"],
        "stolen_accuracy": scores["accuracy"],
        "fidelity": scores["fidelity"],
        "queries": int(target.used),
        "budget": budget,
        "seconds": round(seconds, 1),
        "queries_per_second": round(target.used / max(seconds, 1e-9), 1),
        "student": f"{student_arch} w{student_width} k{student_exits}",
        "test_images": len(test_labels),
    }
