"""Training a multi-exit victim end to end: data, SDN training, thresholds, evaluation, saving.

(Named for what it does: `victim` is what every attack calls the model it attacks.)

`train_victim(config)` is what `python -m mexjax train-victim` runs; it returns and writes a result
record (test accuracy per exit, accuracy and mean FLOPs under the chosen thresholds, the exit
histogram, the minutes it took and on what machine).

Public API:
  VictimConfig                         a victim's recipe as plain data (arch, dataset, exits, width, ...)
  train_victim(config, out_dir) -> dict   train, choose thresholds, evaluate, save (`nets.save`) and
                                       write result.json and exits.png; a rerun resumes the training
  load_or_train(config, out_dir)       (net, variables, thresholds, record): the saved victim, or train it
  evaluate(net, variables, ds, thresholds) -> dict   per-exit accuracy, then `metrics.evaluate` as deployed
  input_shape_for(image_shape)         the network's input shape (smaller than 32x32: padded to 32x32)
  plot_exit_histogram(result, path)    the exit histogram of a result record as an image
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import data, exits, metrics, nets, oracle, results, train

NO_FLIP = {"gtsrb", "svhn"}  # mirrored signs and digits change meaning


@dataclasses.dataclass(frozen=True)
class VictimConfig:
    arch: str = "vgg16"
    dataset: str = "cifar10"
    num_exits: int = 7
    width: float = 1.0
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float | None = None
    recipe: str = "sdn"  # "sdn": SGD, SDN's exit weights; "adam": Adam, every exit weighted 1 (pre-training)
    milestones: tuple[float, ...] | None = None  # lr x0.1 at these fractions of the epochs (default SDN's)
    weight_decay: float | None = None  # default: 5e-4 for VGG16, 1e-4 otherwise (SDN)
    dtype: str = "float32"
    held_out: int = 5000  # training images kept aside to choose thresholds
    train_subset: int | None = None  # train on this many images only (quick runs)
    input_size: int | None = None  # square input side (images resized/padded to it); None: from the data
    max_drop: float = 0.02  # SDN threshold rule: early-exit accuracy within this of the last exit
    threshold: float | None = None  # a global threshold given directly instead of chosen
    thresholds: tuple[float, ...] | None = None  # per-exit thresholds given directly
    seed: int = 0
    data_dir: str | None = None


def input_shape_for(image_shape) -> tuple[int, int, int]:
    """Images smaller than 32x32 are padded to 32x32 (five 2x down-samplings need 32)."""
    h, w, c = image_shape
    return max(h, 32), max(w, 32), c


def evaluate(net, variables, ds: data.Dataset, thresholds) -> dict:
    """Per-exit accuracy (every exit on every image), then the victim as deployed (`metrics.evaluate`):
    accuracy and mean FLOPs under the thresholds, exit histogram."""
    probs = train.predict(net, variables, ds.images)
    per_exit = (probs.argmax(-1) == ds.labels).mean(axis=1)
    deployed = oracle.DeployedModel(net, variables, np.asarray(thresholds, np.float32))
    scores = metrics.evaluate(deployed, ds.images, ds.labels)
    return {
        "accuracy_per_exit": [round(float(a), 4) for a in per_exit],
        "accuracy_early_exit": round(float(scores["accuracy"]), 4),
        "mean_flops": float(scores["mean_flops"]),
        "full_flops": float(nets.exit_flops(net)[-1]),
        "flops_ratio": round(float(scores["flops_ratio"]), 4),
        "exit_histogram": scores["exit_histogram"],
    }


def train_victim(config: VictimConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> dict:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_full = data.load(config.dataset, "train", data_dir=config.data_dir)
    test_split = "val" if config.dataset == "tinyimagenet" else "test"
    test = data.load(config.dataset, test_split, data_dir=config.data_dir)
    input_shape = input_shape_for(train_full.image_shape)
    if config.input_size is not None:  # e.g. 32: a student pre-trained on 64x64 images for 32x32 victims
        if config.input_size < 32:
            raise ValueError(f"input_size must be at least 32 (five 2x poolings); got {config.input_size}")
        input_shape = (config.input_size, config.input_size, input_shape[2])
    split_key, subset_key = jax.random.split(jax.random.key(config.seed))
    if config.held_out >= len(train_full):
        raise ValueError(f"held_out={config.held_out} leaves no training images of {len(train_full)}")
    train_part, held = data.split(train_full, split_key, (len(train_full) - config.held_out, config.held_out))
    if config.train_subset is not None:
        train_part = data.subset(train_part, subset_key, min(config.train_subset, len(train_part)))
    train_part, held, test = (data.fit_dataset(d, input_shape) for d in (train_part, held, test))
    mean, std = data.channel_stats(train_part.images)
    net = nets.build(
        config.arch,
        num_classes=train_full.num_classes,
        num_exits=config.num_exits,
        width=config.width,
        input_shape=input_shape,
        mean=mean,
        std=std,
        dtype=config.dtype,
    )
    weight_decay = config.weight_decay
    if weight_decay is None:  # 0 turns weight decay off
        weight_decay = 5e-4 if config.arch == "vgg16" else 1e-4
    train_config = train.TrainConfig(
        recipe=config.recipe,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        milestones=config.milestones,
        weight_decay=weight_decay,
        flip=config.dataset not in NO_FLIP,
        seed=config.seed,
    )
    metrics_file = out_dir / "run" / "metrics.jsonl"
    resumed_epochs = len(metrics_file.read_text().splitlines()) if metrics_file.exists() else 0
    variables, history = train.fit(
        net, train_part, train_config, workdir=out_dir / "run", eval_set=test, progress=progress
    )
    held_probs = train.predict(net, variables, held.images)
    if config.thresholds is not None:
        thresholds = exits.check_thresholds(config.thresholds, net.num_exits)
        how = "given per exit"
    elif config.threshold is not None:
        thresholds = exits.check_thresholds([config.threshold] * (net.num_exits - 1), net.num_exits)
        how = "given global"
    else:
        choice = exits.sdn_global_threshold(held_probs, held.labels, max_drop=config.max_drop)
        thresholds = choice.thresholds
        how = f"SDN global threshold on {len(held)} held-out images (max drop {config.max_drop})"
    result = {
        "config": dataclasses.asdict(config),
        "input_shape": list(input_shape),
        "thresholds": [round(float(t), 4) for t in thresholds],
        "thresholds_how": how,
        "test": evaluate(net, variables, test, thresholds),
        "exit_flops": nets.exit_flops(net),
        "train_images": len(train_part),
        "history": history,
        # all epochs (also those of earlier, resumed invocations) + this invocation's other work
        "minutes": round(
            (
                time.perf_counter()
                - started
                - sum(h["seconds"] for h in history[resumed_epochs:])
                + sum(h["seconds"] for h in history)
            )
            / 60,
            2,
        ),
        "machine": results.machine_description(),
    }
    nets.save(out_dir / "model", net, variables, thresholds=thresholds, info={"dataset": config.dataset})
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    plot_exit_histogram(result, out_dir / "exits.png")
    return result


def load_or_train(config: VictimConfig, out_dir: str | os.PathLike, *, progress: bool = True):
    """The victim saved in out_dir (trained there before), or train it now (resuming a cut run).

    Returns (net, variables, thresholds, result record)."""
    out_dir = Path(out_dir)
    if (out_dir / "result.json").exists() and (out_dir / "model").exists():
        record = json.loads((out_dir / "result.json").read_text())
        wanted = json.loads(json.dumps(dataclasses.asdict(config)))
        defaults = json.loads(json.dumps(dataclasses.asdict(VictimConfig())))
        if {**defaults, **record["config"]} != wanted:  # fields added since keep their defaults
            raise ValueError(
                f"{out_dir} holds a victim trained with another config; use another folder or delete it"
            )
    else:
        record = train_victim(config, out_dir, progress=progress)
    net, variables, thresholds, _ = nets.load(out_dir / "model")
    return net, variables, thresholds, record


def plot_exit_histogram(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: a saved file must not change a notebook's backend

    test = result["test"]
    k = len(test["exit_histogram"])
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    left.bar(range(1, k + 1), test["exit_histogram"], color="tab:blue")
    left.set(
        xlabel="exit", ylabel="test samples", title=f"exits at thresholds {result['thresholds'][0]:.2f}…"
    )
    right.plot(range(1, k + 1), test["accuracy_per_exit"], "o-")
    right.axhline(test["accuracy_early_exit"], color="tab:red", ls="--", label="early exit")
    right.set(xlabel="exit", ylabel="test accuracy", title="accuracy per exit")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
