"""What every stealing attack of this package shares: the result type, the config of the attacks that
distil a multi-exit student, the student, its training on the victim's answers (+ the strategy loss
where exits were read) and its thresholds.

The attacks differ in where their queries come from and whether they read the victim's timing: the
timing attack (`timing`), the baselines (`baselines`: KnockoffNets, Noise, ES Attack), few-call
stealing (`fewcall`) and the data-free attacks (`datafree`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from mexjax import data, exits, nets, oracle, train
from mexjax.attacks.steal.losses import label_loss, performance_loss, strategy_loss


@dataclasses.dataclass(frozen=True)
class StealConfig:
    arch: str = "vgg16"  # the student's backbone (the attacker's choice)
    width: float = 0.25
    num_exits: int | None = None  # None: the number estimated from timing (ours); baselines must set it
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    lam: float = 1.0  # weight of the strategy loss
    phi1: float = 0.95
    phi2: float = 0.90
    squared_hinge: bool = False
    passes: int = 3  # timing passes per query (each one is a query); with adaptive re-timing, on average
    retime: str = "uniform"  # "uniform": fastest of `passes` for every query; "adaptive": `retime`
    # the share of the queries (the first ones) that are timed; the rest are asked once, untimed, and
    # teach the student the victim's answers only (performance loss): more distinct images for the
    # same budget, since every timing pass costs a query
    timed_share: float = 1.0
    use_timing: bool = True  # False: baseline (no timing, no strategy loss, global threshold)
    label_match: bool = False  # threshold search counts a query only if the label matches too
    # threshold search: True weighs each estimated exit's queries as one equal share
    # (exits.search_thresholds balanced=True): the queries' exit mix is the attacker's (unrelated
    # natural images mostly leave late), not the victim's in deployment. False (default): one count
    # per query, the paper's Eq. 4. Neither wins everywhere (experiments/results/demo/rehearsals_2026-12-07)
    balance_exits: bool = False
    augment: bool = False
    pretrained: str | None = None  # a saved model (nets.save) whose backbone warm-starts the student
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.phi2 <= self.phi1 <= 1:
            raise ValueError(f"need 0 <= phi2 <= phi1 <= 1; got phi1={self.phi1}, phi2={self.phi2}")
        if self.lam < 0 or self.passes < 1:
            raise ValueError("lam must be >= 0 and passes >= 1")
        if not 0 < self.timed_share <= 1:
            raise ValueError(f"timed_share must be in (0, 1]; got {self.timed_share}")
        if self.retime not in ("uniform", "adaptive"):
            raise ValueError(f"retime must be 'uniform' or 'adaptive'; got {self.retime!r}")
        if not self.use_timing and self.num_exits is None:
            raise ValueError("without timing the student's number of exits must be given (num_exits)")


@dataclasses.dataclass(kw_only=True)
class AttackResult:
    """What every attack returns: the stolen model (a student with its thresholds; None: it answers at
    its last exit) and what stealing it cost. Each attack's result adds its own record."""

    net: nets.MultiExitNet
    variables: dict
    thresholds: np.ndarray | None = None
    queries_used: int  # oracle queries spent, repeats included
    budget_exhausted: bool
    config: object  # the attack's config dataclass
    method: str

    def deployed(self) -> oracle.DeployedModel:
        """The stolen model as the attacker would deploy it (its own early exit)."""
        return oracle.DeployedModel(self.net, self.variables, self.thresholds, name=self.method)

    def bookkeeping(self) -> dict:
        """What stealing cost and produced, beside the evaluation's figures (`evaluation.evaluate`)."""
        return {"queries_used": self.queries_used, "student_exits": self.net.num_exits}


@dataclasses.dataclass(kw_only=True)
class StealResult(AttackResult):
    """A student distilled from the victim's answers (the timing attack and the baselines)."""

    thresholds: np.ndarray
    thresholds_how: str
    estimated_exits: np.ndarray | None  # per timed query: the first ones answered (None without timing)
    boundaries: list[float]  # exit boundaries read from the runtimes, in seconds (empty without timing)
    runtimes: np.ndarray  # of the timed queries
    answered: int  # queries answered (images, not counting repeats)
    timing: str
    passes: int
    history: list
    config: StealConfig
    method: str = "ours"  # "ours", "knockoff", "noise" or "esa"
    query_images: np.ndarray | None = None  # the answered queries (uint8), for evaluation on them

    def bookkeeping(self) -> dict:
        return {
            "timing": self.timing,
            "passes": self.passes,
            "queries_used": self.queries_used,
            "thresholds_how": self.thresholds_how,
            "student_exits": self.net.num_exits,
        }


def build_student(
    config: StealConfig, num_classes: int, num_exits: int, input_shape
) -> tuple[nets.MultiExitNet, dict | None]:
    """The attacker's student and its starting variables: None (a fresh init) without a pre-trained
    model; else the pre-trained backbone (`config.pretrained`, same arch and width, trained on the
    attacker's own labelled images) under fresh exit heads, with the pre-trained input normalization."""
    if config.pretrained is None:
        shape = {"num_classes": num_classes, "num_exits": num_exits, "input_shape": input_shape}
        return nets.build(config.arch, width=config.width, **shape), None
    source, source_vars, _, _ = nets.load(config.pretrained)
    spec = source.spec
    if (spec.arch, spec.width, tuple(spec.input_shape)) != (config.arch, config.width, tuple(input_shape)):
        raise ValueError(
            f"the pre-trained model in {config.pretrained} is a {spec.arch} of width {spec.width} on "
            f"{tuple(spec.input_shape)} inputs; the student is a {config.arch} of width {config.width} on "
            f"{tuple(input_shape)}: pre-train one that matches (`train-victim --input-size`) or change "
            "the config"
        )
    net = nets.build(
        config.arch,
        num_classes=num_classes,
        num_exits=num_exits,
        width=config.width,
        input_shape=input_shape,
        mean=spec.mean,
        std=spec.std,
    )
    variables, copied = nets.transfer_backbone(source_vars, net.init(jax.random.key(config.seed)))
    if copied == 0:
        raise ValueError(f"nothing of the pre-trained model in {config.pretrained} fits the student")
    return net, variables


def train_student(
    student: nets.MultiExitNet,
    images: np.ndarray,
    outputs: np.ndarray,
    target_exits: np.ndarray | None,
    config: StealConfig,
    *,
    variables: dict | None = None,
    epochs: int | None = None,
    workdir: str | Path | None = None,
    progress: bool = True,
    queries: int | None = None,
) -> tuple[dict, list]:
    """Distil the victim's answers into `student` at every exit (+ the strategy loss with timing).

    outputs: f32[N, C] probabilities, or int32[N] labels (labels-only victims: cross-entropy on
    labels). target_exits: int32[N] estimated exits, or None (no strategy loss). `variables` warm-
    starts the student (ES Attack trains the same student round after round)."""
    n = len(images)
    labels_only = outputs.ndim == 1
    victim_labels = outputs.astype(np.int32) if labels_only else outputs.argmax(-1).astype(np.int32)
    use_strategy = target_exits is not None and config.use_timing and config.lam > 0
    extras = {}
    if use_strategy:
        extras["target_exits"] = np.asarray(target_exits, np.int32)
    if not labels_only:
        extras["victim_probs"] = np.asarray(outputs, np.float32)

    def loss(logits, labels, batch, weights):
        del weights
        base = label_loss(logits, labels) if labels_only else performance_loss(logits, batch["victim_probs"])
        if not use_strategy:
            return base
        strat = strategy_loss(
            logits, batch["target_exits"], phi1=config.phi1, phi2=config.phi2, squared=config.squared_hinge
        )
        return base + config.lam * strat

    train_config = train.TrainConfig(
        recipe="adam",
        epochs=config.epochs if epochs is None else epochs,
        batch_size=_batch_size(config.batch_size, n),
        learning_rate=config.learning_rate,
        augment=config.augment,
        seed=config.seed,
    )
    num_classes = student.num_classes
    query_set = data.Dataset(images, victim_labels, tuple(str(i) for i in range(num_classes)))
    return train.fit(
        student,
        query_set,
        train_config,
        workdir=workdir,
        variables=variables,
        extras=extras,
        loss=loss,
        meta_extra={"steal": dataclasses.asdict(config), "queries": queries or n},
        progress=progress,
    )


def choose_thresholds(
    student: nets.MultiExitNet,
    variables: dict,
    images: np.ndarray,
    outputs: np.ndarray,
    target_exits: np.ndarray | None,
    config: StealConfig,
) -> tuple[np.ndarray, str]:
    """The student's output strategy: searched on the estimated exits (with timing), or one global
    threshold by the SDN rule on the attacker's own queries (baselines). Returns (thresholds, how)."""
    if student.num_exits == 1:
        return np.zeros(0, np.float32), "none: a single-exit student answers at its only exit"
    victim_labels = outputs.astype(np.int32) if outputs.ndim == 1 else outputs.argmax(-1).astype(np.int32)
    probs = train.predict(student, variables, images)  # [K, N, C]
    if target_exits is not None:
        match = (probs.argmax(-1) == victim_labels[None, :]).T if config.label_match else None
        thresholds = exits.search_thresholds(
            probs.max(-1).T, target_exits, label_match=match, balanced=config.balance_exits
        )
        how = (
            "output-strategy search on the queries' estimated exits"
            + (" and labels" if match is not None else "")
            + (", each exit weighted equally" if config.balance_exits else "")
        )
    else:
        thresholds = exits.sdn_global_threshold(probs, victim_labels).thresholds
        how = "one global threshold chosen on the attacker's own queries (SDN rule, victim labels)"
    return exits.check_thresholds(thresholds, student.num_exits), how


def _batch_size(wanted: int, n: int) -> int:
    """At most `wanted` and `n`, and a multiple of the local device count (the batch is sharded)."""
    devices = jax.local_device_count()
    size = min(wanted, n) // devices * devices
    if size == 0:
        raise ValueError(f"{n} answered queries are fewer than the {devices} devices the batch is split over")
    return size
