"""The black-box victim: what an attacker can ask, and nothing more.

`Oracle.query(images)` answers each image with the victim's probability vector (or its label only)
and the wall time of the answer, measured around real early exit at batch 1 (stages run one by one
until the exit; the answer is on the host when the clock stops). It never returns the exit index.
Every image sent counts against a strict budget, repeats included; a request the budget cannot cover
is answered as far as it goes and then refused with `BudgetExhausted`, which carries those answers.

Timing modes: "measured" (real wall clock, `time.perf_counter`) and "simulated" (the FLOPs of the exit
reached x seconds per FLOP x noise; fast and reproducible for tests and sweeps). Every result says
which mode made it and how many timing passes were taken per query.

Public API:
  Oracle(net, variables, thresholds, *, budget, output, timing, defense) .query(images, passes, timed)
  BlackBox            the Protocol every attack is typed against (Oracle, serve.RemoteOracle)
  QueryResult         outputs, fastest runtimes, every pass's times and order, passes, timing mode
  BudgetExhausted     the refusal past the budget; `.answered` holds what was answered
  SimulatedTiming     the FLOPs cost model of simulated timing (per-FLOP time, overhead, noise, outliers)
  measurement_order(passes, n, rng)   the order each pass times the images in (pass 0: image order)
  check_passes(passes) -> int         timing passes per image, checked before anything is charged
  DeployedModel       a model as served (net, variables, thresholds, output defense); .answer(images)
  deployed(oracle)    the model behind an oracle: the owner's side and evaluation code only
  true_exits(oracle, images)   ground truth for evaluation code
"""

from __future__ import annotations

import dataclasses
import gc
import numbers
import time
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mexjax import exits as mexits
from mexjax.nets import MultiExitNet, exit_flops


@dataclasses.dataclass(frozen=True)
class DeployedModel:
    """A model as it is served: the network, its variables, its output strategy (K - 1 exit thresholds;
    None: every answer from the final exit) and an optional output defense on the answers. The one
    record every evaluation takes (`metrics.evaluate`): a victim, a defended victim, a stolen copy."""

    net: MultiExitNet
    variables: dict
    thresholds: np.ndarray | None = None
    defense: object = None  # defenses.OutputDefense (pure init / apply on probabilities) or None
    name: str = ""

    def answer(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(exit int32[N], probabilities f32[N, C]) under real batched early exit (evaluation: no
        budget, no clock); the output defense, if any, is applied to the answers in one call."""
        x = np.asarray(self.net.check_inputs(images))
        if self.thresholds is None:
            probs = np.asarray(jax.nn.softmax(self.net.logits(self.variables, x)[-1], axis=-1))
            exit_ids = np.full(len(x), self.net.num_exits - 1, np.int32)
        else:
            runner = self.net.runner(tile=8, buckets=(8, 32, 128, 512))
            exit_ids, probs = runner.early_exit_batched(self.variables, x, self.thresholds)
        if self.defense is not None and len(probs):
            probs, _ = self.defense.apply(jnp.asarray(probs), self.defense.init())
        return np.asarray(exit_ids), np.asarray(probs)


class BudgetExhausted(RuntimeError):
    """The query budget is spent; `answered` holds the QueryResult of what was answered."""

    def __init__(self, message: str, answered: QueryResult):
        super().__init__(message)
        self.answered = answered


@dataclasses.dataclass(frozen=True)
class QueryResult:
    outputs: np.ndarray  # f32[N, C] probabilities, or int32[N] labels when the victim gives labels only
    runtimes: np.ndarray  # f64[N] seconds (fastest of `passes` timings)
    passes: int
    timing: str  # "measured", "simulated" or "untimed"
    output: str  # "probs" or "labels"
    # f64[passes, N]: every pass's time of every image (column i: image i); pass p timed all N
    # images before pass p + 1. None when untimed.
    pass_runtimes: np.ndarray | None = None
    # int64[passes, N]: the order of measurement, pass_order[p, t] = the image timed t-th in pass p
    # (`measurement_order`). None: image order in every pass (simulated timing, older results).
    pass_order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.runtimes)


@dataclasses.dataclass(frozen=True)
class SimulatedTiming:
    """Cost model: time = (overhead + FLOPs of the exit reached x seconds_per_flop) x noise.

    noise: "lognormal" (multiplicative, sigma = scale) or "gaussian" (additive, sd = scale x the
    full network's time); outliers: the share of answers slowed by a factor drawn from [2, 5].
    """

    seconds_per_flop: float = 2e-11
    overhead: float = 5e-5
    noise: str = "lognormal"
    scale: float = 0.03
    outliers: float = 0.0

    def __post_init__(self):
        if self.noise not in ("lognormal", "gaussian"):
            raise ValueError(f"noise must be 'lognormal' or 'gaussian'; got {self.noise!r}")
        if self.seconds_per_flop <= 0 or self.scale < 0 or not 0 <= self.outliers < 1:
            raise ValueError("need seconds_per_flop > 0, scale >= 0 and 0 <= outliers < 1")

    def sample(self, key, flops: np.ndarray, full_flops: float) -> np.ndarray:
        k1, k2, k3 = jax.random.split(key, 3)
        base = self.overhead + flops * self.seconds_per_flop
        z = np.asarray(jax.random.normal(k1, flops.shape), np.float64)
        if self.noise == "lognormal":
            t = base * np.exp(self.scale * z)
        else:
            t = base + self.scale * (self.overhead + full_flops * self.seconds_per_flop) * z
        slow = np.asarray(jax.random.uniform(k2, flops.shape)) < self.outliers
        factor = 2.0 + 3.0 * np.asarray(jax.random.uniform(k3, flops.shape), np.float64)
        return np.maximum(np.where(slow, t * factor, t), 1e-9)


@runtime_checkable
class BlackBox(Protocol):
    """What every attack may use of a victim: its input shape and classes, what it answers (probs or
    labels), its budget, and `query`. The in-process `Oracle` and the network client
    (`serve.RemoteOracle`) satisfy it, and so does any recorded or simulated stand-in that has these
    members; attacks are typed against this, never against one of them."""

    output: str
    budget: int
    used: int
    timing: object

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def remaining(self) -> int: ...

    def query(self, images, *, passes: int = 1, timed: bool = True) -> QueryResult: ...


class Oracle:
    """A trained multi-exit victim behind a black-box interface (see the module docstring)."""

    def __init__(
        self,
        net: MultiExitNet,
        variables,
        thresholds,
        *,
        budget: int,
        output: str = "probs",
        timing: str | SimulatedTiming = "measured",
        key: jax.Array | None = None,
        defense=None,
        progress: bool = False,
    ):
        if output not in ("probs", "labels"):
            raise ValueError(f"output must be 'probs' or 'labels'; got {output!r}")
        if not isinstance(budget, int) or budget < 0:
            raise ValueError(f"budget must be a non-negative int; got {budget!r}")
        if timing != "measured" and not isinstance(timing, SimulatedTiming):
            raise ValueError("timing must be 'measured' or a SimulatedTiming")
        self._net = net
        self._variables = variables
        self._thresholds = mexits.check_thresholds(thresholds, net.num_exits)
        self._runner = net.runner(tile=1)
        self._flops = np.asarray(exit_flops(net), np.float64)
        self.budget = budget
        self.output = output
        self.timing = timing
        self._key = key if key is not None else jax.random.key(0)
        self._orders = np.random.default_rng(np.asarray(jax.random.key_data(self._key)).ravel().tolist())
        self.used = 0
        self._warm = False
        # an output defense (defenses.OutputDefense) perturbs every answer's probabilities after the
        # network ran (its cost is the same for every exit, so measured times leave it out)
        self.defense = defense
        self.progress = progress  # a bar over measured timing passes (updated between passes only)
        self._defense_state = defense.init() if defense is not None else None
        self._defend = jax.jit(defense.apply) if defense is not None else None

    @property
    def input_shape(self):
        return self._net.input_shape

    @property
    def num_classes(self) -> int:
        """Classes of the answers (a client sees the length of the probability vector or the API docs)."""
        return self._net.num_classes

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def warmup(self) -> None:
        """Compile the answering path before the first query: costs no query of the budget (a served
        victim does this before its first client, whose first answer would otherwise carry the
        compilation)."""
        image = np.zeros((1, *self._net.input_shape), np.float32)
        if isinstance(self.timing, SimulatedTiming):
            self._runner.early_exit_batched(self._variables, image, self._thresholds)
        else:
            self._warmup(image)

    def _warmup(self, image):
        if not self._warm:  # compile every stage once; not counted, not timed
            self._lean = self._runner.lean(self._variables, image)
            row = np.array(self._runner.pad_rows(image, self._runner.tile))
            # the first few hundred answers after compilation run slow (allocations, thread pools):
            # run the whole network until 0.3 s have passed and at least 50 times, untimed
            never = np.full_like(self._thresholds, np.inf)
            start, runs = time.perf_counter(), 0
            while runs < 50 or time.perf_counter() - start < 0.3:
                self._lean(row, never)
                runs += 1
            self._lean(row, np.zeros_like(self._thresholds))
            self._warm = True

    def query(self, images, *, passes: int = 1, timed: bool = True) -> QueryResult:
        """Answer images [N, H, W, C] (uint8, or float in [0, 1]); each is timed `passes` times.

        Costs N x passes queries. Raises BudgetExhausted (with the answers it could give) when the
        remaining budget does not cover the request. timed=False answers the batch at once without
        timing it (runtimes NaN; for attacks that ignore the clock, e.g. data-free extraction)."""
        passes = check_passes(passes)
        images = self._net.check_inputs(images)  # shape, dtype and NaN checks; float32 in [0, 1]
        images = np.asarray(images)
        n = len(images)
        affordable = min(n, self.remaining // passes)
        answered = self._answer(images[:affordable], passes) if timed else self._untimed(images[:affordable])
        if affordable < n:
            raise BudgetExhausted(
                f"query budget exhausted: {self.budget} queries allowed, {self.used} used; answered "
                f"{affordable} of {n} images ({passes} timing passes each). The answers so far are in "
                "this exception's `answered`.",
                answered,
            )
        return answered

    def _untimed(self, images) -> QueryResult:
        self.used += len(images)
        _, probs = self._runner.early_exit_batched(self._variables, images, self._thresholds)
        return self._respond(probs, np.full(len(images), np.nan), 1, "untimed")

    def _respond(self, probs, runtimes, passes, mode, every=None, order=None) -> QueryResult:
        if self._defend is not None and len(probs):
            defended, self._defense_state = self._defend(jnp.asarray(probs), self._defense_state)
            probs = np.asarray(defended)
        outputs = probs.argmax(-1).astype(np.int32) if self.output == "labels" else probs
        every = None if every is None else np.asarray(every, np.float64).reshape(passes, len(runtimes))
        return QueryResult(outputs, runtimes.astype(np.float64), passes, mode, self.output, every, order)

    def _answer(self, images, passes) -> QueryResult:
        n = len(images)
        self.used += n * passes
        if isinstance(self.timing, SimulatedTiming):
            exit_ids, probs = self._runner.early_exit_batched(self._variables, images, self._thresholds)
            times = []
            for _ in range(passes):
                self._key, sub = jax.random.split(self._key)
                times.append(self.timing.sample(sub, self._flops[exit_ids], float(self._flops[-1])))
            every = np.stack(times) if n else np.zeros((passes, 0))
            mode, order = "simulated", None  # simulated noise does not depend on the order
        else:
            probs = np.zeros((n, self._net.num_classes), np.float32)
            every = np.zeros((passes, n))
            if n:
                self._warmup(images[:1])
            # fresh host copies (a view into a device buffer takes a slower transfer path), validated
            # before the clock starts, so each timing holds the network and nothing else
            rows = [np.array(self._runner.pad_rows(images[i : i + 1], self._runner.tile)) for i in range(n)]
            answer, thresholds = self._lean, self._thresholds
            order = measurement_order(passes, n, self._orders)
            collecting = gc.isenabled()
            gc.disable()  # a garbage-collection pause inside the clock would read as a later exit
            bar = tqdm(total=n * passes, desc="timing", unit="query", disable=not self.progress or n < 100)
            try:
                for p in range(passes):
                    times = every[p]
                    for i in order[p]:
                        start = time.perf_counter()
                        _, row = answer(rows[i], thresholds)
                        times[i] = time.perf_counter() - start
                        probs[i] = row
                    bar.update(n)  # between passes: nothing of the bar runs between two timed queries
            finally:
                bar.close()
                if collecting:
                    gc.enable()
            mode = "measured"
        runtimes = every.min(axis=0) if n else np.zeros(0)
        return self._respond(probs, runtimes, passes, mode, every, order)


def measurement_order(passes: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The order to time N images in, per pass: int64[passes, N]; pass 0 in image order, every later
    pass in a fresh random order.

    A measured time depends a little on the answer timed just before it (what it left in the caches)
    and on the place in the pass (a pass starts slower): in the same order every pass, those effects
    follow the image through all its passes and look like its own exit's time. Shuffled, they are
    noise that differs from pass to pass, which the passes average out and which lets a split of
    the times be tested for being the images' own (`exits.estimate_exits`, step 5)."""
    first = np.arange(n)[None, :]
    later = [rng.permutation(n) for _ in range(passes - 1)]
    return np.concatenate([first, *[o[None, :] for o in later]]).astype(np.int64)


def check_passes(passes) -> int:
    """Timing passes per image as an int, checked before anything is charged."""
    if isinstance(passes, bool) or not isinstance(passes, numbers.Integral) or passes < 1:
        raise ValueError(
            f"passes must be a whole number >= 1 (timing passes per image); got {passes!r}: "
            "nothing was charged"
        )
    return int(passes)


def deployed(oracle: Oracle) -> DeployedModel:
    """The model behind `oracle` as it answers (with its output defense): for the owner's side (the
    server that hosts it) and for evaluation code (`metrics.evaluate`, ground truth). Attack code must
    never call this: a remote attacker cannot."""
    return DeployedModel(oracle._net, oracle._variables, oracle._thresholds, oracle.defense)


def true_exits(oracle: Oracle, images) -> np.ndarray:
    """Ground truth for evaluation code only: the exit each image takes in the victim.

    Attack code must never call this (a remote attacker cannot); it costs no queries."""
    images = oracle._net.check_inputs(images)
    exit_ids, _ = oracle._runner.early_exit_batched(oracle._variables, np.asarray(images), oracle._thresholds)
    return exit_ids
