"""The training loop: SDN recipe (all exits, weighted loss) and IC-only recipe (frozen backbone).

One jit-compiled, data-parallel `train_step(state, images, labels, weights, key)`; augmentation
runs inside it on the device. The epoch loop shuffles with `fold_in(data_key, epoch)` and derives
every step's randomness from `fold_in(step_key, step)`, so a run resumed from its last checkpoint
ends with bit-identical parameters to an uninterrupted one.

`metrics.jsonl` gets one line per epoch, written before that epoch's checkpoint (which also stores the
record). On resume the file is rewritten to the epochs the checkpoint holds, one record each; a last
line cut by a kill mid-write is skipped with a warning, a corrupt line before it is an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mexjax import data as mdata
from mexjax.checkpoint import Checkpointer, CheckpointError
from mexjax.nets import MultiExitNet
from mexjax.results import BadRecordLine, read_records
from mexjax.train import _sharding
from mexjax.train._losses import sdn_loss, sdn_weights

RECIPES = ("sdn", "ic_only", "adam")
OPTIMIZER_LAYOUT = 2  # checkpoints store the optimizer state; 2: the learning rate in it (make_optimizer)


class MetricsFileError(ValueError):
    """A metrics.jsonl holds a corrupt record before its last line."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Plain-data configuration of a training run (defaults: the SDN paper's recipe)."""

    recipe: str = (
        "sdn"  # "sdn": all exits, SGD; "ic_only": frozen backbone, Adam on the ICs; "adam": all, Adam
    )
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float | None = None  # default 0.1 (sdn) / 1e-3 (ic_only)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # SDN: 5e-4 for VGG, 1e-4 for the others
    milestones: tuple[float, ...] | None = None  # lr x decay at these fractions of the epochs
    lr_decay: float = 0.1
    augment: bool = True  # random crop (pad 4) inside jit
    flip: bool = True  # random horizontal flip (turn off for digits and signs)
    crop_pad: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}; got {self.recipe!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive; got {self.epochs}, {self.batch_size}")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:  # 0 is a learning rate too
            return self.learning_rate
        return 0.1 if self.recipe == "sdn" else 1e-3

    @property
    def lr_milestones(self) -> tuple[float, ...]:
        if self.milestones is not None:
            return tuple(self.milestones)
        return (0.35, 0.60, 0.85) if self.recipe == "sdn" else (0.6,)  # epochs 35/60/85 of 100; 15 of 25


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    fixed: dict  # other variable collections, carried unchanged (a quantized net's activation ranges)

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats, **self.fixed}


def make_optimizer(config: TrainConfig, steps_per_epoch: int, params) -> optax.GradientTransformation:
    """SDN: SGD + momentum + weight decay; Adam (all exits); IC-only: Adam on IC parameters, the rest
    frozen. The learning rate is a value in the optimizer's state (`set_learning_rate`), not a
    constant of the compiled step: the schedule changes it between epochs, and two runs that differ
    only in learning rate, epochs or data size compile (and cache) one and the same step program."""
    del steps_per_epoch  # the schedule is per epoch (`learning_rate_at`)
    if config.recipe == "sdn":
        direction = optax.chain(
            optax.add_decayed_weights(config.weight_decay), optax.trace(decay=config.momentum)
        )
    elif config.recipe == "adam":
        direction = optax.scale_by_adam()
    else:
        labels = {name: ("ics" if name.startswith("ics_") else "frozen") for name in params}
        direction = optax.multi_transform(
            {"ics": optax.scale_by_adam(), "frozen": optax.set_to_zero()}, labels
        )
    scale = optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=config.lr)
    return optax.chain(direction, scale)


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """The schedule: the learning rate x lr_decay for every milestone (a fraction of the epochs)
    reached by `epoch` (0-based)."""
    decays = sum(epoch >= round(m * config.epochs) for m in config.lr_milestones)
    return float(config.lr * config.lr_decay**decays)


def set_learning_rate(opt_state, learning_rate: float):
    """`opt_state` of `make_optimizer` with its learning rate replaced (same sharding)."""
    direction, scale = opt_state
    old = scale.hyperparams["learning_rate"]
    new = jax.device_put(jnp.asarray(learning_rate, old.dtype), getattr(old, "sharding", None))
    hyperparams = {**scale.hyperparams, "learning_rate": new}
    return (direction, scale._replace(hyperparams=hyperparams))


def loss_weights(config: TrainConfig, epoch: int, num_exits: int) -> np.ndarray:
    if config.recipe == "sdn":
        return sdn_weights(epoch, config.epochs, num_exits)
    if config.recipe == "adam":
        return np.ones(num_exits, np.float32)
    return np.concatenate([np.ones(num_exits - 1), [0.0]]).astype(np.float32)


def default_loss(logits, labels, extras, weights):
    """The SDN weighted cross-entropy (extras unused)."""
    del extras
    return sdn_loss(logits, labels, weights)


def make_train_step(net: MultiExitNet, tx: optax.GradientTransformation, config: TrainConfig, loss=None):
    """The pure step: (state, uint8 images, labels, extras, loss weights, key) -> (state, metric sums).

    `loss(logits, labels, extras, weights) -> f32[B]` (per example); `extras` is a dict of per-example
    arrays that travel with the batch (e.g. a victim's probabilities). Default: `default_loss`."""
    loss = loss or default_loss

    def step(state: TrainState, images, labels, extras, weights, key):
        key = jax.random.fold_in(key, state.step)
        aug_key, dropout_key = jax.random.split(key)
        if config.augment:
            images = mdata.augment(aug_key, images, pad=config.crop_pad, flip=config.flip)
        x = images.astype(jnp.float32) / 255.0

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats, **state.fixed}
            if config.recipe != "ic_only":
                logits, stats = net.apply(variables, x, train=True, dropout_key=dropout_key)
            else:  # frozen backbone: batch norm keeps its running statistics
                logits, stats = net.apply(variables, x), state.batch_stats
            per_example = loss(logits, labels, extras, weights)
            return jnp.mean(per_example), (logits, stats)

        (loss_value, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.stack([jnp.sum((jnp.argmax(lg, -1) == labels).astype(jnp.int32)) for lg in logits])
        metrics = {
            "loss_sum": loss_value * labels.shape[0],
            "correct": correct,
            "count": jnp.asarray(labels.shape[0], jnp.int32),
        }
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state)
        return new_state, metrics

    return step


def predict(net: MultiExitNet, variables, images, *, batch_size: int = 256) -> np.ndarray:
    """Probabilities at every exit, f32[K, N, C], evaluated in fixed-size (padded) batches."""
    n = len(images)
    out = []
    for start in range(0, n, batch_size):
        chunk = np.asarray(images[start : start + batch_size])
        rows = len(chunk)
        if rows < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - rows, *chunk.shape[1:]), chunk.dtype)])
        logits = net.logits(variables, chunk)
        out.append(np.stack([np.asarray(jax.nn.softmax(lg, axis=-1))[:rows] for lg in logits]))
    return np.concatenate(out, axis=1) if out else np.zeros((net.num_exits, 0, net.num_classes), np.float32)


def fit(
    net: MultiExitNet,
    train_set: mdata.Dataset,
    config: TrainConfig,
    *,
    workdir: str | Path | None = None,
    eval_set: mdata.Dataset | None = None,
    variables: dict | None = None,
    devices=None,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    extras: dict[str, np.ndarray] | None = None,
    loss=None,
    meta_extra: dict | None = None,
) -> tuple[dict, list[dict]]:
    """Train `net` on `train_set` (uint8 images of the net's input shape). Returns (variables, history).

    With `workdir`, writes `metrics.jsonl` (one record per epoch) and an Orbax checkpoint per epoch,
    and resumes from the newest checkpoint there. `variables` starts from given weights (needed by
    the IC-only recipe, which trains ICs on a trained backbone). `stop_after_epoch` ends the run
    early after that epoch (0-based) as an interruption would, keeping its checkpoint. `extras`
    (per-example arrays aligned with `train_set`) and `loss` customize the objective (see
    `make_train_step`); `meta_extra` (JSON) is stored with the checkpoints and must match on resume.
    """
    _check_fit_inputs(net, train_set, config, variables, workdir, extras)
    mesh = _sharding.data_mesh(devices)
    _sharding.check_divisible(config.batch_size, mesh)
    steps_per_epoch = len(train_set) // config.batch_size
    init_key, data_key, step_key = jax.random.split(jax.random.key(config.seed), 3)
    state, tx = _initial_state(net, config, variables, steps_per_epoch, init_key)
    extras = dict(extras or {})
    meta = {
        "optimizer": OPTIMIZER_LAYOUT,
        "config": _jsonable(dataclasses.asdict(config)),
        "spec": _jsonable(dataclasses.asdict(net.spec)),
        "extra": _jsonable(meta_extra or {}),
    }
    start_epoch, history, checkpointer = 0, [], None
    if workdir is not None:
        workdir = Path(workdir)
        checkpointer, resumed = _open_run(workdir, meta, state, step_key)
        if resumed is not None:
            state, step_key, start_epoch, history = resumed

    repl = _sharding.replicated(mesh)
    state = _sharding.to_mesh(state, repl)
    step_key = jax.random.wrap_key_data(_sharding.to_mesh(jax.random.key_data(step_key), repl))
    step_fn = jax.jit(make_train_step(net, tx, config, loss), donate_argnums=0, out_shardings=(repl, repl))
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            weights = _sharding.to_mesh(loss_weights(config, epoch, net.num_exits), repl)
            state = state.replace(
                opt_state=set_learning_rate(state.opt_state, learning_rate_at(config, epoch))
            )
            order = mdata.permutation(jax.random.fold_in(data_key, epoch), len(train_set))
            state, totals = _run_epoch(
                step_fn, state, train_set, extras, order, weights, step_key, mesh, config, epoch, progress
            )
            record = _epoch_record(config, epoch, totals, time.perf_counter() - started)
            if eval_set is not None:
                probs = predict(net, _sharding.to_host(state.variables), eval_set.images)
                record["eval_acc"] = [
                    round(float(a), 5) for a in (probs.argmax(-1) == eval_set.labels).mean(axis=1)
                ]
            history.append(record)
            if progress:
                tqdm.write(_format_record(record))
            if checkpointer is not None:
                with open(workdir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                host_state = jax.device_get({"train": state, "key": jax.random.key_data(step_key)})
                checkpointer.save(epoch, host_state, {**meta, "epoch": epoch, "record": record})
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return _sharding.to_host(state.variables), history


def _check_fit_inputs(net, train_set, config: TrainConfig, variables, workdir, extras) -> None:
    """`fit`'s arguments, refused with the fix before anything is compiled."""
    if tuple(train_set.image_shape) != net.input_shape:
        raise ValueError(
            f"training images are {train_set.image_shape} but the net takes {net.input_shape}: fit them "
            "first with mexjax.data.to_input_shape"
        )
    if config.recipe == "ic_only" and variables is None:
        raise ValueError("the IC-only recipe trains ICs on a trained backbone: pass its variables")
    if workdir is not None and jax.process_count() > 1:
        raise NotImplementedError(
            "checkpointing a run under jax.distributed (several processes) is not implemented: train "
            "without workdir there, or on one host"
        )
    if len(train_set) // config.batch_size == 0:
        raise ValueError(f"{len(train_set)} training images are fewer than one batch of {config.batch_size}")
    for name, array in (extras or {}).items():
        if len(array) != len(train_set):
            raise ValueError(f"extras[{name!r}] has {len(array)} rows for {len(train_set)} training images")


def _initial_state(net, config: TrainConfig, variables, steps_per_epoch: int, init_key):
    """(TrainState at step 0, its optimizer): fresh weights, or a copy of the given ones."""
    if variables is None:
        variables = net.init(init_key)
    else:  # the train step donates its state: never let it consume the caller's arrays
        variables = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), variables)
    tx = make_optimizer(config, steps_per_epoch, variables["params"])
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
        fixed={k: v for k, v in variables.items() if k not in ("params", "batch_stats")},
    )
    return state, tx


def _open_run(workdir: Path, meta: dict, state: TrainState, step_key):
    """The run's checkpointer in workdir, and (state, step key, first epoch to train, history) when
    it resumes a run there (None for a fresh one). A run made with another config, net or extra
    meta is refused rather than mixed with this one."""
    workdir.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir / "checkpoints")
    if checkpointer.latest_step() is None:  # lines of epochs that never reached a checkpoint: redone
        _write_history(workdir / "metrics.jsonl", [])
        return checkpointer, None
    saved = checkpointer.read_meta()
    if saved.get("optimizer") != OPTIMIZER_LAYOUT:
        checkpointer.close()
        raise CheckpointError(
            f"{workdir} holds a run of an earlier mexjax whose optimizer state has another layout; start it "
            "afresh in another workdir (or delete this one)"
        )
    for part in ("config", "spec", "extra"):
        if saved.get(part, {} if part == "extra" else None) != meta[part]:
            checkpointer.close()
            raise CheckpointError(
                f"{workdir} holds a run with another {part}; resume with the same {part} or use a fresh "
                "workdir"
            )
    abstract = jax.eval_shape(lambda: {"train": state, "key": jax.random.key_data(step_key)})
    restored, saved = checkpointer.restore(abstract)
    start_epoch = saved["epoch"] + 1
    history = _read_history(workdir / "metrics.jsonl", start_epoch, saved.get("record"))
    return checkpointer, (restored["train"], jax.random.wrap_key_data(restored["key"]), start_epoch, history)


def _run_epoch(step_fn, state, train_set, extras, order, weights, step_key, mesh, config, epoch, progress):
    """One pass over the batches of `order`: (state, metric sums on the host, one transfer)."""
    batch_sharding = _sharding.batch_sharding(mesh)
    totals = None
    steps = len(train_set) // config.batch_size
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
    for b in bar:
        idx = _sharding.process_rows(np.sort(order[b * config.batch_size : (b + 1) * config.batch_size]))
        xb = _sharding.to_mesh(np.asarray(train_set.images[idx]), batch_sharding)
        yb = _sharding.to_mesh(np.asarray(train_set.labels[idx]), batch_sharding)
        eb = {k: _sharding.to_mesh(np.asarray(v[idx]), batch_sharding) for k, v in extras.items()}
        state, metrics = step_fn(state, xb, yb, eb, weights, step_key)
        totals = metrics if totals is None else jax.tree_util.tree_map(jnp.add, totals, metrics)
    return state, _sharding.to_host(totals)


def _epoch_record(config: TrainConfig, epoch: int, totals: dict, seconds: float) -> dict:
    """The metrics.jsonl line of one epoch (before evaluation)."""
    return {
        "epoch": epoch + 1,
        "train_loss": float(totals["loss_sum"] / totals["count"]),
        "train_acc": [round(float(c / totals["count"]), 5) for c in totals["correct"]],
        "lr": learning_rate_at(config, epoch),
        "seconds": round(seconds, 2),
    }


def _format_record(record: dict) -> str:
    acc = " ".join(f"{a:.3f}" for a in record.get("eval_acc", record["train_acc"]))
    which = "eval" if "eval_acc" in record else "train"
    return (
        f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, {which} acc per exit [{acc}], "
        f"{record['seconds']:.1f}s"
    )


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl, in file order.

    A last line that is not a record (cut short by a kill while it was written) is skipped with a
    warning; a bad line before the last one raises MetricsFileError naming it.
    """
    path = Path(path)

    def cut_short(number: int, line: str) -> None:
        warnings.warn(
            f"{path}: the last line ({number}) is cut short ({line[:40]!r}), as a run killed while "
            "writing it leaves it; skipping it (a resumed run trains that epoch again).",
            UserWarning,
            stacklevel=3,
        )

    try:
        return read_records(path, is_record=_is_epoch_record, strict=True, on_skip=cut_short)
    except BadRecordLine as err:
        raise MetricsFileError(
            f"{path} line {err.number} is not an epoch record ({err.line[:60]!r}) although later lines are: "
            "the file is corrupt. Repair or delete that line (the checkpoints hold the training state; "
            "metrics.jsonl only the per-epoch history), then run again."
        ) from None


def _is_epoch_record(record) -> bool:
    return isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] >= 1


def _read_history(path: Path, upto_epoch: int, checkpoint_record: dict | None = None) -> list[dict]:
    """Records of the epochs 1..`upto_epoch` a resumed run already finished, one per epoch; the file is
    rewritten to them. Later lines (epochs killed before their checkpoint) are dropped; of two lines of
    one epoch the later is kept, and the checkpoint's own record (if it has one) wins for its epoch."""
    by_epoch = {}
    for record in read_metrics(path) if path.exists() else []:
        if record["epoch"] <= upto_epoch:
            by_epoch[record["epoch"]] = record
    if checkpoint_record is not None:
        by_epoch[checkpoint_record["epoch"]] = dict(checkpoint_record)
    kept = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    _write_history(path, kept)
    return kept


def _write_history(path: Path, records: list[dict]) -> None:
    """Replace the file whole (a kill mid-write leaves the old file, never a half one)."""
    if not records and not path.exists():
        return
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
