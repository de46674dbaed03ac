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

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if self.batch_size < 1 or self.directions < 1 or self.student_steps < 0 or self.iterations < 1:
            raise ValueError("need batch_size >= 1, directions >= 1, student_steps >= 0 and iterations >= 1")
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


@dataclasses.dataclass
class DataFreeResult:
    net: nets.MultiExitNet
    variables: dict
    queries_used: int
    iterations: int  # completed iterations
    budget_exhausted: bool
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
    victim: oracle.Oracle,
    student: nets.MultiExitNet,
    config: DataFreeConfig = DataFreeConfig(),
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> DataFreeResult:
    """Run DFME or MAZE (config.method) against `victim` until its budget or config.iterations ends.

    The student must take the victim's input shape and classes. With `workdir`, the student is saved
    there (nets.save) every 10 iterations and at the end. A victim answering labels only cannot be
    attacked this way (both losses need probabilities)."""
    if victim.output != "probs":
        raise ValueError("DFME and MAZE need the victim's probabilities; this oracle answers labels only")
    if student.input_shape != victim.input_shape or student.num_classes != victim.num_classes:
        raise ValueError(
            f"the student takes {student.input_shape} / {student.num_classes} classes but the victim "
            f"{victim.input_shape} / {victim.num_classes}: build it with the victim's shape and classes"
        )
    key = jax.random.key(config.seed)
    s_key, g_key, key = jax.random.split(key, 3)
    generator = Generator(victim.input_shape, config.generator_width)
    g_vars = generator.init(g_key, jnp.zeros((2, config.noise_dim)), train=True)
    s_vars = student.init(s_key)
    s_tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(config.student_lr, momentum=0.9))
    g_tx = optax.adam(config.generator_lr)
    s_opt, g_opt = s_tx.init(s_vars["params"]), g_tx.init(g_vars["params"])
    generate, probe, generator_update, student_update = _steps(student, generator, config, s_tx, g_tx)

    rng = np.random.default_rng(config.seed)
    replay_x = np.zeros((0, *victim.input_shape), np.float32)
    replay_p = np.zeros((0, victim.num_classes), np.float32)
    history: list[dict] = []
    started = time.perf_counter()
    exhausted, iteration = False, 0

    def result():
        return DataFreeResult(
            student, jax.device_get(s_vars), victim.used, len(history), exhausted, history, config,
            time.perf_counter() - started, config.method,
        )  # fmt: skip

    def ask(images):
        return victim.query(np.asarray(images), timed=False).outputs

    def fresh(g_vars, z):
        x, g_vars = generate(g_vars, z)
        if not bool(jnp.all(jnp.isfinite(x))):
            if workdir is not None:
                nets.save(Path(workdir) / "student", student, jax.device_get(s_vars))
            raise GeneratorDiverged(
                f"the generator produced NaN or infinite images in iteration {iteration}; the student "
                "trained so far is in this exception's `result`"
                + (f" and saved in {workdir}" if workdir else "")
                + " (lower generator_lr)",
                result(),
            )
        return x, g_vars

    bar = tqdm(total=min(config.iterations, max(victim.remaining, 0) // config.queries_per_iteration) or None,
               desc=config.method.upper(), disable=not progress)  # fmt: skip
    try:
        for iteration in range(1, config.iterations + 1):
            key, z_key, u_key = jax.random.split(key, 3)
            z = jax.random.normal(z_key, (config.batch_size, config.noise_dim))
            x, g_vars = fresh(g_vars, z)
            shifted, u = probe(x, u_key)
            probs_x = ask(x)
            probs_shifted = ask(shifted)
            g_vars, g_opt, g_loss = generator_update(g_vars, g_opt, s_vars, z, x, u, probs_x, probs_shifted)
            s_losses = []
            for _ in range(config.student_steps):
                key, z_key = jax.random.split(key)
                z = jax.random.normal(z_key, (config.batch_size, config.noise_dim))
                x, g_vars = fresh(g_vars, z)
                probs = ask(x)
                key, d_key = jax.random.split(key)
                s_vars, s_opt, loss = student_update(s_vars, s_opt, x, probs, d_key)
                s_losses.append(float(loss))
                if config.replay_steps:
                    replay_x = np.concatenate([replay_x, np.asarray(x)])[-config.replay_size :]
                    replay_p = np.concatenate([replay_p, np.asarray(probs)])[-config.replay_size :]
            for _ in range(config.replay_steps if len(replay_x) else 0):
                pick = rng.integers(0, len(replay_x), config.batch_size)
                key, d_key = jax.random.split(key)
                s_vars, s_opt, loss = student_update(s_vars, s_opt, replay_x[pick], replay_p[pick], d_key)
            history.append({"iteration": iteration, "queries": victim.used, "generator_loss": float(g_loss),
                            "student_loss": float(np.mean(s_losses)) if s_losses else None,
                            "seconds": time.perf_counter() - started})  # fmt: skip
            bar.update(1)
            bar.set_postfix(queries=victim.used, student_loss=history[-1]["student_loss"])
            if workdir is not None and iteration % 10 == 0:
                nets.save(Path(workdir) / "student", student, jax.device_get(s_vars))
    except oracle.BudgetExhausted:
        exhausted = True  # the answers of the cut request are not used: the iteration is incomplete
    finally:
        bar.close()
    if workdir is not None:
        nets.save(Path(workdir) / "student", student, jax.device_get(s_vars))
    return result()


def dfme(victim, student, config: DataFreeConfig | None = None, **kwargs) -> DataFreeResult:
    """DFME (L1 on recovered logits, 1 direction)."""
    return data_free(victim, student, config or DataFreeConfig(), **kwargs)


def maze(victim, student, config: DataFreeConfig | None = None, **kwargs) -> DataFreeResult:
    """MAZE (KL, 10 directions, experience replay)."""
    return data_free(victim, student, config or maze_config(), **kwargs)
