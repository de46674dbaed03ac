"""Stealing a multi-exit network: utility *and* output strategy (seed 000, METHODS §3).

The attacker queries the black-box victim (`oracle.BlackBox`: in process or over HTTP), reads each
query's exit from the answer times (`exits.estimate_exits`), trains a multi-exit student with as many
exits on the performance loss (KL to the victim's answers at every exit) plus the strategy loss
(confident at the estimated exit, not before), then searches thresholds that make the student exit where
the victim did. With `use_timing=False` the same code is the baseline: distillation at every exit, no
timing, and one global threshold chosen on the attacker's own queries.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jax
import numpy as np

from mexjax import data, exits, metrics, nets, oracle, train
from mexjax.attacks.steal._losses import label_loss, performance_loss, strategy_loss
from mexjax.attacks.steal._retime import adaptive_timing


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
    retime: str = "uniform"  # "uniform": fastest of `passes` for every query; "adaptive": `_retime`
    # the share of the queries (the first ones) that are timed; the rest are asked once, untimed, and
    # teach the student the victim's answers only (performance loss): more distinct images for the
    # same budget, since every timing pass costs a query
    timed_share: float = 1.0
    use_timing: bool = True  # False: baseline (no timing, no strategy loss, global threshold)
    label_match: bool = False  # threshold search counts a query only if the label matches too
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


@dataclasses.dataclass
class StealResult:
    net: nets.MultiExitNet
    variables: dict
    thresholds: np.ndarray
    thresholds_how: str
    estimated_exits: np.ndarray | None  # per timed query: the first ones answered (None without timing)
    boundaries: list[float]  # exit boundaries read from the runtimes, in seconds (empty without timing)
    runtimes: np.ndarray  # of the timed queries
    answered: int  # queries answered (images, not counting repeats)
    queries_used: int  # oracle queries spent, repeats included
    budget_exhausted: bool
    timing: str
    passes: int
    history: list
    config: StealConfig
    method: str = "ours"  # "ours", "knockoff", "noise" or "esa"
    query_images: np.ndarray | None = None  # the answered queries (uint8), for evaluation on them


def steal(
    victim: oracle.BlackBox,
    queries: np.ndarray,
    config: StealConfig,
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> StealResult:
    """Run the attack with `queries` (uint8 images of the victim's input shape)."""
    passes = config.passes if config.use_timing else 1
    n_timed = len(queries)
    if config.use_timing and config.timed_share < 1:
        n_timed = min(len(queries), max(2, int(np.ceil(config.timed_share * len(queries)))))
    exhausted = False
    try:
        if config.use_timing and config.retime == "adaptive":
            answers = adaptive_timing(victim, queries[:n_timed], total_passes=config.passes)
            exhausted = answers.exhausted
        else:
            answers = victim.query(queries[:n_timed], passes=passes)
    except oracle.BudgetExhausted as stop:
        answers, exhausted = stop.answered, True
        warnings.warn(f"{stop} Continuing with the {len(answers)} answered queries.", stacklevel=2)
    n = len(answers)  # timed (all answered queries without timing)
    outputs = answers.outputs
    if n == n_timed < len(queries) and not exhausted:  # the untimed rest: answers only
        try:
            rest = victim.query(queries[n_timed:], passes=1, timed=False)
        except oracle.BudgetExhausted as stop:
            rest, exhausted = stop.answered, True
            warnings.warn(f"{stop} Continuing with the {n + len(rest)} answered queries.", stacklevel=2)
        outputs = np.concatenate([outputs, rest.outputs])
    answered = len(outputs)
    if n < 2:
        raise ValueError(f"only {n} queries were answered: not enough to train a student")
    images = np.asarray(queries[:answered])
    if images.dtype != np.uint8:
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)

    est, boundaries = None, []
    num_exits = config.num_exits
    if config.use_timing:
        every = getattr(answers, "pass_runtimes", None)  # every pass, when the oracle kept them
        timed = every if every is not None and every.shape[0] > 1 else answers.runtimes
        order = getattr(answers, "pass_order", None) if timed is every else None
        est, k, boundaries = exits.estimate_exits(timed, order=order, return_boundaries=True)
        if k < 2:
            raise ValueError(
                "the timing shows a single exit: the victim seems not to exit early on these queries "
                "(or answers in constant time); set num_exits and use_timing=False for a plain copy"
            )
        if n < k:
            raise ValueError(f"{n} queries cannot train a student with {k} exits")
        num_exits = num_exits or min(k, nets.MAX_EXITS)
        est = np.minimum(est, num_exits - 1).astype(np.int32)
    student, initial = build_student(config, victim.num_classes, num_exits, victim.input_shape)
    targets = est  # the untimed rest has no exit to copy: -1 switches the strategy loss off for it
    if est is not None and answered > n:
        targets = np.concatenate([est, np.full(answered - n, -1, np.int32)])
    variables, history = train_student(
        student,
        images,
        outputs,
        targets,
        config,
        variables=initial,
        workdir=workdir,
        progress=progress,
        queries=answered,
    )
    thresholds, how = choose_thresholds(student, variables, images[:n], outputs[:n], est, config)
    return StealResult(
        net=student,
        variables=variables,
        thresholds=thresholds,
        thresholds_how=how,
        estimated_exits=est,
        boundaries=boundaries,
        runtimes=answers.runtimes,
        answered=answered,
        queries_used=victim.used,
        budget_exhausted=exhausted,
        timing=answers.timing,
        passes=config.passes if config.retime == "adaptive" else answers.passes,
        history=history,
        config=config,
        method="ours" if config.use_timing else "knockoff",
        query_images=images,
    )


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
    victim_labels = outputs.astype(np.int32) if outputs.ndim == 1 else outputs.argmax(-1).astype(np.int32)
    probs = train.predict(student, variables, images)  # [K, N, C]
    if target_exits is not None:
        match = (probs.argmax(-1) == victim_labels[None, :]).T if config.label_match else None
        thresholds = exits.search_thresholds(probs.max(-1).T, target_exits, label_match=match)
        how = "output-strategy search on the queries' estimated exits" + (
            " and labels" if match is not None else ""
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


def evaluate(victim: oracle.Oracle, result: StealResult, images, labels) -> dict:
    """Evaluation code (holds ground truth): student vs victim on a test set, each under its own policy
    (`metrics.evaluate`), with the attack's bookkeeping."""
    student = oracle.DeployedModel(result.net, result.variables, result.thresholds, name=result.method)
    scores = metrics.evaluate(student, images, labels, reference=oracle.deployed(victim))
    out = {
        "victim_accuracy": scores["reference_accuracy"],
        "accuracy": scores["accuracy"],
        "fidelity": scores["fidelity"],
        "closeness": scores["closeness"],
        "exit_agreement": scores["exit_agreement"],
        "victim_mean_flops": scores["reference_mean_flops"],
        "mean_flops": scores["mean_flops"],
        "victim_exit_histogram": scores["reference_exit_histogram"],
        "exit_histogram": scores["exit_histogram"],
        "timing": result.timing,
        "passes": result.passes,
        "queries_used": result.queries_used,
        "thresholds_how": result.thresholds_how,
        "student_exits": result.net.num_exits,
    }
    return out


def exit_prediction(victim: oracle.Oracle, result: StealResult, queries) -> dict:
    """Evaluation code: how well the timing analysis predicted the answered queries' true exits."""
    if result.estimated_exits is None:
        raise ValueError("this attack did not use timing")
    true = oracle.true_exits(victim, np.asarray(queries[: len(result.estimated_exits)]))
    return metrics.exit_prediction(result.estimated_exits, true)
