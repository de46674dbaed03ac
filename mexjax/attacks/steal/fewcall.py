"""Few-call stealing (METHODS §5): active selection of proxies + self-paced pseudo-labels.

With a budget of a few dozen calls per class, which images are sent matters, and every image not
sent should still teach the student something. Round after round:

1. embed every proxy with the student's penultimate features (`MultiExitNet.features`);
2. per class, draw the round's calls among unqueried proxies with weight exp(-‖z - μ_c‖ / σ_c)
   (μ_c: the class's centroid; proxies typical of their class are asked first);
3. query the victim (the oracle enforces the budget) and train the student on its answers;
4. embed again and give each unqueried proxy the distance-weighted vote of its k nearest queried
   proxies, kept only where the vote agrees with the class the proxy was made for;
5. train the student on queried + pseudo-labelled proxies.

σ_c is the class's median distance to its centroid unless given (the reference's σ = 600 belongs to its
own feature scale). `selection="random"` and `self_paced=False` are the ablations.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mexjax import data, nets, oracle
from mexjax.attacks.steal.baselines import knockoff
from mexjax.attacks.steal.evaluation import evaluate
from mexjax.attacks.steal.proxies import check_proxies
from mexjax.attacks.steal.student_training import AttackResult, StealConfig, train_student


@dataclasses.dataclass(frozen=True)
class FewCallConfig:
    calls_per_class: int = 32
    rounds: int = 2
    k: int = 5  # neighbours of a pseudo-label vote
    sigma: float | None = None  # selection temperature; None: per class, median distance to the centroid
    selection: str = "active"  # "active" (centroid-weighted) or "random" (ablation)
    self_paced: bool = True  # pseudo-label unqueried proxies (False: ablation)
    arch: str = "resnet18"  # the student: any nets backbone, single exit
    width: float = 0.25
    epochs: int = 20  # of each of the two trainings of a round
    batch_size: int = 64
    learning_rate: float = 1e-3
    augment: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.calls_per_class < 1 or self.rounds < 1 or self.k < 1 or self.epochs < 1:
            raise ValueError("calls_per_class, rounds, k and epochs must all be >= 1")
        if self.rounds > self.calls_per_class:
            raise ValueError(f"{self.rounds} rounds need at least one call per class each")
        if self.selection not in ("active", "random"):
            raise ValueError(f"selection must be 'active' or 'random'; got {self.selection!r}")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"sigma must be positive; got {self.sigma}")

    def student(self, num_classes: int, input_shape) -> nets.MultiExitNet:
        """The attacker's single-exit student for a victim with these classes and input shape."""
        return nets.build(
            self.arch, num_classes=num_classes, num_exits=1, width=self.width, input_shape=input_shape
        )

    def student_config(self) -> StealConfig:
        return StealConfig(
            arch=self.arch, width=self.width, num_exits=1, use_timing=False, epochs=self.epochs,
            batch_size=self.batch_size, learning_rate=self.learning_rate, augment=self.augment,
            seed=self.seed,
        )  # fmt: skip


@dataclasses.dataclass(kw_only=True)
class FewCallResult(AttackResult):
    """A single-exit student (thresholds None) and the record of its rounds."""

    queried: np.ndarray  # int32 indices of the proxies sent to the victim, in order
    rounds: list  # per round: calls, pseudo-labels proposed and kept, seconds
    config: FewCallConfig
    method: str = "fewcall"


@functools.partial(jax.jit, static_argnames="num_classes")
def _centroid_distances(latents, classes, *, num_classes: int):
    """‖z - μ_c‖ of every proxy to its own class's centroid."""
    onehot = jax.nn.one_hot(classes, num_classes, dtype=latents.dtype)  # [N, C]
    counts = jnp.maximum(onehot.sum(0), 1.0)
    centroids = (onehot.T @ latents) / counts[:, None]
    return jnp.linalg.norm(latents - centroids[classes], axis=-1)


def selection_weights(latents, classes, num_classes: int, sigma: float | None = None) -> np.ndarray:
    """Sampling weight exp(-‖z - μ_c‖ / σ_c) of every proxy (latents f32[N, D], classes int32[N]).

    σ_c: `sigma`, or the class's median distance to its centroid (scale-free default)."""
    latents = jnp.asarray(latents, jnp.float32)
    classes = jnp.asarray(classes, jnp.int32)
    dist = np.asarray(_centroid_distances(latents, classes, num_classes=num_classes))
    if sigma is None:
        scale = np.ones(num_classes)
        for c in range(num_classes):
            mine = dist[np.asarray(classes) == c]
            if len(mine):
                scale[c] = max(float(np.median(mine)), 1e-12)
        sigma_each = scale[np.asarray(classes)]
    else:
        sigma_each = np.full(len(dist), sigma)
    return np.exp(-dist / sigma_each)


def select_queries(key, weights, classes, available, per_class: int) -> np.ndarray:
    """`per_class` proxies of every class drawn without replacement with probability ∝ weights among
    the `available` ones (Gumbel top-k). Returns sorted int32 indices."""
    classes, available = np.asarray(classes), np.asarray(available, bool)
    gumbel = np.asarray(jax.random.gumbel(key, (len(classes),)), np.float64)
    with np.errstate(divide="ignore"):
        score = np.where(available, np.log(np.asarray(weights, np.float64)) + gumbel, -np.inf)
    chosen = []
    for c in np.unique(classes):
        members = np.flatnonzero((classes == c) & available)
        chosen.append(members[np.argsort(-score[members], kind="stable")[:per_class]])
    return np.sort(np.concatenate(chosen)).astype(np.int32) if chosen else np.zeros(0, np.int32)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_vote(query_latents, query_labels, latents, *, k: int, num_classes: int):
    d2 = (
        jnp.sum(latents**2, -1)[:, None]
        - 2.0 * latents @ query_latents.T
        + jnp.sum(query_latents**2, -1)[None, :]
    )
    neg, idx = jax.lax.top_k(-d2, k)
    weight = 1.0 / (jnp.sqrt(jnp.maximum(-neg, 0.0)) + 1e-6)
    votes = jnp.zeros((latents.shape[0], num_classes), jnp.float32)
    rows = jnp.arange(latents.shape[0])[:, None]
    votes = votes.at[rows, query_labels[idx]].add(weight)
    return jnp.argmax(votes, -1).astype(jnp.int32)


def pseudo_labels(query_latents, query_labels, latents, classes, *, k: int = 5, num_classes: int):
    """Self-paced labels: the distance-weighted vote of the k nearest queried proxies (victim labels),
    kept only where it agrees with the class the proxy was made for. Returns (labels int32[M], keep
    bool[M])."""
    query_latents = jnp.asarray(query_latents, jnp.float32)
    if len(query_latents) == 0:
        raise ValueError("no queried proxies to vote: query the victim first")
    k = min(k, len(query_latents))
    labels = np.asarray(
        _knn_vote(
            query_latents,
            jnp.asarray(query_labels, jnp.int32),
            jnp.asarray(latents, jnp.float32),
            k=k,
            num_classes=num_classes,
        )
    )
    return labels, labels == np.asarray(classes)


def _targets(outputs: np.ndarray, num_classes: int) -> np.ndarray:
    """The victim's answers as probability rows (labels-only answers become one-hot)."""
    if outputs.ndim == 1:
        return np.eye(num_classes, dtype=np.float32)[outputs]
    return np.asarray(outputs, np.float32)


def _fit(images, input_shape) -> np.ndarray:
    """uint8 images of the victim's input shape (what a client sends)."""
    return np.asarray(data.to_input_shape(images, input_shape)).astype(np.uint8)


def _ask(victim: oracle.BlackBox, images) -> tuple[np.ndarray, bool]:
    try:
        return victim.query(images, timed=False).outputs, False
    except oracle.BudgetExhausted as stop:
        warnings.warn(f"{stop} Continuing with the answers so far.", stacklevel=3)
        return stop.answered.outputs, True


def check_budget(victim: oracle.BlackBox, num_classes: int, calls: int) -> None:
    if victim.remaining < num_classes:
        raise ValueError(
            f"the victim's remaining budget ({victim.remaining} queries) is smaller than the number of "
            f"classes ({num_classes}): few-call stealing needs at least one call per class"
        )
    if victim.remaining < calls:
        warnings.warn(
            f"the plan spends {calls} calls but the victim allows {victim.remaining}: the last round "
            "will be cut short",
            stacklevel=3,
        )


def few_call(
    victim: oracle.BlackBox, proxies: data.Dataset, config: FewCallConfig, *, progress: bool = True
) -> FewCallResult:
    """Steal `victim` with `config.calls_per_class` calls per class spent on `proxies` (see module)."""
    num_classes = victim.num_classes
    check_proxies(proxies, num_classes, config.calls_per_class)
    check_budget(victim, num_classes, config.calls_per_class * num_classes)
    images = _fit(proxies.images, victim.input_shape)
    classes = np.asarray(proxies.labels)
    student = config.student(num_classes, victim.input_shape)
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    variables = student.init(init_key)
    steal_config = config.student_config()
    queried = np.zeros(0, np.int32)
    targets = np.zeros((0, num_classes), np.float32)
    rounds, exhausted = [], False
    per_round = np.full(config.rounds, config.calls_per_class // config.rounds)
    per_round[: config.calls_per_class % config.rounds] += 1
    for r, calls in enumerate(per_round):
        started = time.perf_counter()
        key, pick = jax.random.split(key)
        available = np.ones(len(images), bool)
        available[queried] = False
        if config.selection == "active":
            weights = selection_weights(
                student.features(variables, images), classes, num_classes, config.sigma
            )
        else:
            weights = np.ones(len(images))
        chosen = select_queries(pick, weights, classes, available, int(calls))
        outputs, exhausted = _ask(victim, images[chosen])
        chosen = chosen[: len(outputs)]
        queried = np.concatenate([queried, chosen])
        targets = np.concatenate([targets, _targets(outputs, num_classes)])
        variables, _ = train_student(
            student, images[queried], targets, None, steal_config, variables=variables, progress=progress
        )
        proposed = kept = 0
        train_images, train_targets = images[queried], targets
        rest = np.setdiff1d(np.arange(len(images)), queried)
        if config.self_paced and len(rest):
            latents = student.features(variables, images)
            labels, keep = pseudo_labels(
                latents[queried], targets.argmax(-1), latents[rest], classes[rest], k=config.k,
                num_classes=num_classes,
            )  # fmt: skip
            proposed, kept = len(rest), int(keep.sum())
            train_images = np.concatenate([train_images, images[rest[keep]]])
            train_targets = np.concatenate(
                [train_targets, np.eye(num_classes, dtype=np.float32)[labels[keep]]]
            )
            variables, _ = train_student(
                student,
                train_images,
                train_targets,
                None,
                steal_config,
                variables=variables,
                progress=progress,
            )
        rounds.append(
            dict(round=r + 1, calls=len(chosen), pseudo_proposed=proposed, pseudo_kept=kept,
                 seconds=round(time.perf_counter() - started, 2))
        )  # fmt: skip
        if exhausted:
            break
    return FewCallResult(
        net=student, variables=variables, queried=queried, rounds=rounds, queries_used=victim.used,
        budget_exhausted=exhausted, config=config,
    )  # fmt: skip


def knockoff_calls(
    victim: oracle.BlackBox, pool_images, calls: int, config: FewCallConfig, *, progress: bool = True
) -> FewCallResult:
    """KnockoffNets (`baselines.knockoff`) with the few-call student and calls: `calls` random natural
    images of an unrelated pool, the student trained as long as the few-call one in total (2 x rounds x
    epochs)."""
    if calls < 1 or len(pool_images) < calls:
        raise ValueError(
            f"KnockoffNets needs 1 <= calls <= the pool's {len(pool_images)} images; got {calls}"
        )
    pick, _ = jax.random.split(jax.random.key(config.seed))  # the images the earlier code chose
    chosen = np.sort(data.permutation(pick, len(pool_images))[:calls]).astype(np.int32)
    images = _fit(np.asarray(pool_images)[chosen], victim.input_shape)
    steal_config = dataclasses.replace(config.student_config(), epochs=2 * config.rounds * config.epochs)
    stolen = knockoff(victim, images, steal_config, progress=progress)
    rounds = [dict(round=1, calls=stolen.answered, pseudo_proposed=0, pseudo_kept=0)]
    return FewCallResult(
        net=stolen.net, variables=stolen.variables, queried=chosen[: stolen.answered], rounds=rounds,
        queries_used=stolen.queries_used, budget_exhausted=stolen.budget_exhausted, config=config,
        method="knockoff",
    )  # fmt: skip


def evaluate_few_call(victim: oracle.Oracle, result: FewCallResult, images, labels) -> dict:
    """Evaluation code only (costs no queries): the student's accuracy on labelled `images` and its
    fidelity (agreement with the victim's answers under the victim's own early exit)."""
    images = _fit(np.asarray(images), victim.input_shape)
    scores = evaluate(victim, result, images, labels)
    return dict(
        accuracy=scores["accuracy"], fidelity=scores["fidelity"], victim_accuracy=scores["victim_accuracy"]
    )
