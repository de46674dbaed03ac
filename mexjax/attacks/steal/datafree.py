"""Data-free model extraction: DFME and MAZE (METHODS §6), against any oracle (defended or not).

Both train a generator G(z) of query images and a student S together, with no natural data:
- the student imitates the victim V on G's images (DFME: L1 between the logits recovered from V's
  probabilities, log p − mean log p, and S's centred logits; MAZE: KL(V ‖ S));
- the generator seeks images where S and V disagree most. V is a black box, so the gradient of the
  disagreement with respect to the image is estimated by forward differences along `directions`
  random unit directions (ε = 1e-3) — every perturbed image is a query — and back-propagated
  through G. MAZE also replays earlier queries to the student (experience replay).

Queries per iteration = batch x (1 + directions) for the generator + batch x student_steps. The
generator and student updates are jit-compiled; only the oracle calls leave the device. The budget is
the oracle's: when it runs out the attack stops cleanly and returns the student it has.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mexjax import nets, oracle
from mexjax.attacks.steal.student_training import AttackResult
from mexjax.train import kl_divergence

METHODS = ("dfme", "maze")


@dataclasses.dataclass(frozen=True)
class DataFreeConfig:
    """Settings of DFME (defaults) and MAZE (`maze_config()`)."""

    method: str = "dfme"
    iterations: int = 100  # at most; the budget usually ends the run first
    batch_size: int = 256
    directions: int = 1  # m random directions of the zeroth-order gradient
    epsilon: float = 1e-3  # forward-difference step, in [0, 1] pixel units
    student_steps: int = 5  # student updates on fresh queries per iteration
    replay_steps: int = 0  # MAZE: student updates on replayed queries per iteration
    replay_size: int = 10_000  # MAZE: queries kept for replay
    student_lr: float = 0.1
    generator_lr: float = 1e-4
    noise_dim: int = 256
    generator_width: float = 1.0
    seed: int = 0
    log_every: int = 10  # iterations per history record (the losses are read from the device only then)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if self.batch_size < 1 or self.directions < 1 or self.student_steps < 0 or self.iterations < 1:
            raise ValueError("need batch_size >= 1, directions >= 1, student_steps >= 0 and iterations >= 1")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1 (iterations per history record); got {self.log_every}")
        if not self.epsilon > 0 or not self.student_lr > 0 or not self.generator_lr > 0:
            raise ValueError("epsilon and the learning rates must be positive")

    @property
    def queries_per_iteration(self) -> int:
        return self.batch_size * (1 + self.directions + self.student_steps)


def maze_config(**overrides) -> DataFreeConfig:
    """MAZE's settings: KL loss, 10 directions, experience replay."""
    base = dict(method="maze", batch_size=128, directions=10, student_steps=4, replay_steps=4)
    return DataFreeConfig(**{**base, **overrides})


class Generator(nn.Module):
    """DFME's generator: z -> dense -> (upsample, conv, BN, leaky ReLU) x 2 -> conv -> tanh, in [0, 1]."""

    output_shape: tuple[int, int, int]
    width: float = 1.0

    @nn.compact
    def __call__(self, z, train: bool = True):
        h, w, c = self.output_shape
        ch = max(8, round(128 * self.width))
        x = nn.Dense(ch * (h // 4) * (w // 4))(z).reshape(-1, h // 4, w // 4, ch)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        for features in (ch, max(4, ch // 2)):
            x = jax.image.resize(x, (x.shape[0], x.shape[1] * 2, x.shape[2] * 2, x.shape[3]), "nearest")
            x = nn.Conv(features, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.leaky_relu(x, 0.2)
        x = nn.Conv(c, (3, 3))(x)
        return (jnp.tanh(x) + 1.0) / 2.0


def recovered_logits(probs):
    """Logits up to a constant from probabilities: log p − mean log p (DFME's recovery)."""
    logp = jnp.log(jnp.maximum(probs, 1e-12))
    return logp - jnp.mean(logp, axis=-1, keepdims=True)


def disagreement(method: str, victim_probs, student_logits):
    """Per-example loss f32[B] between the victim's probabilities and one student exit's logits."""
    if method == "dfme":
        centred = student_logits - jnp.mean(student_logits, axis=-1, keepdims=True)
        return jnp.mean(jnp.abs(recovered_logits(victim_probs) - centred), axis=-1)
    return kl_divergence(victim_probs, student_logits)


def _student_loss(method, logits, victim_probs):
    """Mean over the batch of the disagreement summed over the student's exits."""
    return jnp.mean(sum(disagreement(method, victim_probs, lg) for lg in logits))


@dataclasses.dataclass(kw_only=True)
class DataFreeResult(AttackResult):
    """The student trained on generated images (answers at its last exit: thresholds None)."""

    iterations: int  # completed iterations
    # at iteration 1, every config.log_every-th and the last: the mean losses since the record before
    history: list[dict]
    config: DataFreeConfig
    seconds: float
    method: str = "dfme"


class GeneratorDiverged(FloatingPointError):
    """The generator produced NaN or infinite images; `result` holds the last good student."""

    def __init__(self, message: str, result: DataFreeResult):
        super().__init__(message)
        self.result = result


def _steps(student: nets.MultiExitNet, generator: Generator, config: DataFreeConfig, s_tx, g_tx):
    """The jit-compiled pieces of one iteration (built once per attack)."""
    method = config.method

    @jax.jit
    def generate(g_vars, z):
        images, updates = generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
        return images, {**g_vars, **updates}

    @jax.jit
    def probe(x, key):
        """x and its forward-difference neighbours x + ε u (u unit-norm per image)."""
        u = jax.random.normal(key, (config.directions, *x.shape))
        u = u / jnp.sqrt(jnp.sum(u * u, axis=(2, 3, 4), keepdims=True))
        shifted = jnp.clip(x[None] + config.epsilon * u, 0.0, 1.0)
        return shifted.reshape(-1, *x.shape[1:]), u

    @jax.jit
    def generator_update(g_vars, g_opt, s_vars, z, x, u, probs_x, probs_shifted):
        # the student is white box to the attacker; the victim's side comes from the answers
        m = config.directions
        shifted = jnp.clip(x[None] + config.epsilon * u, 0.0, 1.0).reshape(-1, *x.shape[1:])
        loss_x = _per_example(s_vars, x, probs_x)
        loss_shifted = _per_example(s_vars, shifted, probs_shifted).reshape(m, -1)
        slope = (loss_shifted - loss_x[None]) / config.epsilon  # [m, B]
        grad_x = jnp.mean(slope[:, :, None, None, None] * u, axis=0)  # ascent direction of the loss

        def images_of(params):
            return generator.apply({**g_vars, "params": params}, z, train=True, mutable=["batch_stats"])[0]

        _, pullback = jax.vjp(images_of, g_vars["params"])
        (grads,) = pullback(-grad_x)  # maximize the disagreement
        with jax.numpy_dtype_promotion("standard"):
            updates, g_opt = g_tx.update(grads, g_opt, g_vars["params"])
        params = optax.apply_updates(g_vars["params"], updates)
        return {**g_vars, "params": params}, g_opt, jnp.mean(loss_x)

    def _per_example(s_vars, x, probs):
        logits = student.apply(s_vars, x)
        return sum(disagreement(method, probs, lg) for lg in logits)

    @jax.jit
    def student_update(s_vars, s_opt, x, probs, key):
        def loss_fn(params):
            logits, stats = student.apply({**s_vars, "params": params}, x, train=True, dropout_key=key)
            return _student_loss(method, logits, probs), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(s_vars["params"])
        with jax.numpy_dtype_promotion("standard"):
            updates, s_opt = s_tx.update(grads, s_opt, s_vars["params"])
        params = optax.apply_updates(s_vars["params"], updates)
        return {**s_vars, "params": params, "batch_stats": stats}, s_opt, loss

    return generate, probe, generator_update, student_update


def data_free(
    victim: oracle.BlackBox,
    student: nets.MultiExitNet,
    config: DataFreeConfig = DataFreeConfig(),
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> DataFreeResult:
    """Run DFME or MAZE (config.method) against `victim` until its budget or config.iterations ends.

    The student must take the victim's input shape and classes. With `workdir`, the student is saved
    there (nets.save) every 10 iterations and at the end. A victim answering labels only cannot be
    attacked this way (both losses need probabilities). The losses stay on the device between history
    records (`config.log_every`): the loop waits only for the victim's answers."""
    _check_data_free(victim, student)
    run = _DataFreeRun.start(victim, student, config)
    history: list[dict] = []
    window: list[tuple] = []  # (generator loss, student losses) of the iterations since the last record
    started = time.perf_counter()
    exhausted, done, used = False, 0, 0  # completed iterations, and the queries they used

    def log(iteration: int) -> None:
        if window:
            history.append(_history_record(window, iteration, used, time.perf_counter() - started))
            window.clear()

    def result():
        return DataFreeResult(
            net=student, variables=jax.device_get(run.s_vars), queries_used=victim.used, iterations=done,
            budget_exhausted=exhausted, history=history, config=config,
            seconds=time.perf_counter() - started, method=config.method,
        )  # fmt: skip

    def save():
        if workdir is not None:
            nets.save(Path(workdir) / "student", student, jax.device_get(run.s_vars))

    total = min(config.iterations, max(victim.remaining, 0) // config.queries_per_iteration) or None
    bar = tqdm(total=total, desc=config.method.upper(), disable=not progress)
    try:
        for iteration in range(1, config.iterations + 1):
            window.append(run.iteration(victim, iteration))
            done, used = iteration, victim.used
            if iteration == 1 or iteration % config.log_every == 0:
                log(iteration)
                bar.set_postfix(queries=victim.used, student_loss=history[-1]["student_loss"])
            bar.update(1)
            if iteration % 10 == 0:
                save()
    except oracle.BudgetExhausted:
        exhausted = True  # the answers of the cut request are not used: the iteration is incomplete
    except _NonFinite as err:
        save()
        raise GeneratorDiverged(
            f"the generator produced NaN or infinite images in iteration {err.iteration}; the student "
            "trained so far is in this exception's `result`"
            + (f" and saved in {workdir}" if workdir else "")
            + " (lower generator_lr)",
            result(),
        ) from None
    finally:
        bar.close()
    log(done)
    save()
    return result()


def _check_data_free(victim: oracle.BlackBox, student: nets.MultiExitNet) -> None:
    if victim.output != "probs":
        raise ValueError("DFME and MAZE need the victim's probabilities; this oracle answers labels only")
    if student.input_shape != victim.input_shape or student.num_classes != victim.num_classes:
        raise ValueError(
            f"the student takes {student.input_shape} / {student.num_classes} classes but the victim "
            f"{victim.input_shape} / {victim.num_classes}: build it with the victim's shape and classes"
        )


class _NonFinite(FloatingPointError):
    def __init__(self, iteration: int):
        super().__init__(f"non-finite images in iteration {iteration}")
        self.iteration = iteration


def _history_record(window: list[tuple], iteration: int, queries: int, seconds: float) -> dict:
    """One history line: the losses of the iterations in `window` averaged (one device read)."""
    g_losses, s_losses = zip(*window, strict=True)
    g_mean = float(jnp.mean(jnp.stack(g_losses)))
    student = [loss for losses in s_losses for loss in losses]
    s_mean = float(jnp.mean(jnp.stack(student))) if student else None
    return {"iteration": iteration, "queries": queries, "generator_loss": g_mean, "student_loss": s_mean,
            "seconds": seconds}  # fmt: skip


@dataclasses.dataclass
class _DataFreeRun:
    """What one data-free attack carries from iteration to iteration, and its compiled steps."""

    config: DataFreeConfig
    steps: tuple
    s_vars: dict
    s_opt: object
    g_vars: dict
    g_opt: object
    key: jax.Array
    rng: np.random.Generator
    replay_x: np.ndarray
    replay_p: np.ndarray

    @classmethod
    def start(
        cls, victim: oracle.BlackBox, student: nets.MultiExitNet, config: DataFreeConfig
    ) -> _DataFreeRun:
        s_key, g_key, key = jax.random.split(jax.random.key(config.seed), 3)
        generator = Generator(victim.input_shape, config.generator_width)
        g_vars = generator.init(g_key, jnp.zeros((2, config.noise_dim)), train=True)
        s_vars = student.init(s_key)
        s_tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(config.student_lr, momentum=0.9))
        g_tx = optax.adam(config.generator_lr)
        return cls(
            config, _steps(student, generator, config, s_tx, g_tx), s_vars, s_tx.init(s_vars["params"]),
            g_vars, g_tx.init(g_vars["params"]), key, np.random.default_rng(config.seed),
            np.zeros((0, *victim.input_shape), np.float32), np.zeros((0, victim.num_classes), np.float32),
        )  # fmt: skip

    def _fresh(self, iteration: int):
        """A batch from the generator (z, images on the device, the same on the host: the victim needs
        them there anyway, and the finiteness check reads them there)."""
        self.key, z_key = jax.random.split(self.key)
        z = jax.random.normal(z_key, (self.config.batch_size, self.config.noise_dim))
        x, self.g_vars = self.steps[0](self.g_vars, z)
        host = np.asarray(x)
        if not np.all(np.isfinite(host)):
            raise _NonFinite(iteration)
        return z, x, host

    def iteration(self, victim: oracle.BlackBox, iteration: int) -> tuple:
        """One generator update and the student's updates: (generator loss, [student losses]) as
        device arrays (not waited for)."""
        _, probe, generator_update, student_update = self.steps
        config = self.config

        def ask(images):
            return victim.query(np.asarray(images), timed=False).outputs

        z, x, host = self._fresh(iteration)
        self.key, u_key = jax.random.split(self.key)
        shifted, u = probe(x, u_key)
        probs_x, probs_shifted = ask(host), ask(shifted)
        self.g_vars, self.g_opt, g_loss = generator_update(
            self.g_vars, self.g_opt, self.s_vars, z, x, u, probs_x, probs_shifted
        )
        s_losses = []
        for _ in range(config.student_steps):
            _, x, host = self._fresh(iteration)
            probs = ask(host)
            self.key, d_key = jax.random.split(self.key)
            self.s_vars, self.s_opt, loss = student_update(self.s_vars, self.s_opt, x, probs, d_key)
            s_losses.append(loss)
            if config.replay_steps:
                self.replay_x = np.concatenate([self.replay_x, host])[-config.replay_size :]
                self.replay_p = np.concatenate([self.replay_p, np.asarray(probs)])[-config.replay_size :]
        for _ in range(config.replay_steps if len(self.replay_x) else 0):
            pick = self.rng.integers(0, len(self.replay_x), config.batch_size)
            self.key, d_key = jax.random.split(self.key)
            self.s_vars, self.s_opt, _ = student_update(
                self.s_vars, self.s_opt, self.replay_x[pick], self.replay_p[pick], d_key
            )
        return g_loss, s_losses


def dfme(victim, student, config: DataFreeConfig | None = None, **kwargs) -> DataFreeResult:
    """DFME (L1 on recovered logits, 1 direction)."""
    return data_free(victim, student, config or DataFreeConfig(), **kwargs)


def maze(victim, student, config: DataFreeConfig | None = None, **kwargs) -> DataFreeResult:
    """MAZE (KL, 10 directions, experience replay)."""
    return data_free(victim, student, config or maze_config(), **kwargs)
