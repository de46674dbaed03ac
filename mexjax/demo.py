"""The CPU-sized demo behind the README's main command.

End to end, in timed phases: the data it uses (the victim's test set and the attacker's TinyImageNet images,
decoded once, then cached); the victim (the CIFAR-10 VGG16-SDN committed in `assets/`, trained by the
command beside it; trained here when it is missing or damaged, or with `train_victim`), whose three
inference paths (all exits, batch-1 early exit, batched early exit) are run and compared; the attacker's
student, from scratch or (`pretrained_dir`) from a backbone pre-trained on the attacker's own labelled
TinyImageNet images (trained here when the folder holds none); then the stealing attack through the timing
side channel with KnockoffNets beside it at the same query budget, the same student and the same training.
Every claim of the stealing paper that the demo checks is written into the summary as passed or failed
(`CLAIMS`); figures and a JSON summary are written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import data, nets

VICTIM_INPUT = (32, 32, 3)
ASSETS = Path(__file__).resolve().parents[1] / "assets"  # committed models (a source checkout)
DEMO_VICTIM = ASSETS / "victims" / "vgg16_cifar10_w025_k4"

# what the demo checks (issue-style targets of the stealing paper at this size)
CLAIMS = {
    "exits_found": "the number of exits read from the timing is the victim's",
    "exit_accuracy": "aligned balanced exit-prediction accuracy >= 0.90",
    "utility": "our test accuracy >= 60 % of the victim's and within 3 points of KnockoffNets'",
    "strategy_test": "our CLO on the victim's test set >= KnockoffNets' + 20 points",
    "strategy_natural": "our CLO on natural images never queried >= KnockoffNets' + 20 points",
    "cost": "our CC <= 1.2 x the victim's and closer to the victim's than KnockoffNets'",
}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Plain-data settings of the demo (the CLI's flags)."""

    seed: int = 0
    # 5 timing passes: with one core busy, fewer leave the victim's neighbouring exits overlapping
    # (experiments/demo_passes.py, experiments/results/demo/passes.md)
    budget: int = 20000  # oracle queries each attack may spend (timing repeats count)
    timed: int = 1000  # ours: images timed `passes` times each; the rest of the budget: distinct images
    passes: int = 5  # asked once, untimed (they teach the answers, the timed ones the exits as well)
    retime: str = "uniform"  # ours: fastest of `passes` for every timed image, or "adaptive" re-timing
    # ours: thresholds searched with each estimated exit's timed images weighed equally (StealConfig)
    balance_exits: bool = False
    # ours; KnockoffNets as many example-steps (rounded up to whole epochs). 6 since the convolution
    # change: 405 s in all under one busy core, and our accuracy then met the utility claim (2: 214 s, not)
    student_epochs: int = 6
    student_width: float = 0.25  # the student: a VGG16-SDN of this width (the pre-trained one's)
    student_batch_size: int = 128
    held_out: int = 1000  # TinyImageNet val images never queried: CLO on natural images
    victim_dir: str | None = str(DEMO_VICTIM)
    train_victim: bool = False  # train the victim here even when a saved one is there
    victim_images: int = 20000  # training the victim here: CIFAR-10 images ...
    victim_epochs: int = 4  # ... and epochs
    # a student backbone pre-trained on the attacker's TinyImageNet (scripts/demo_assets.sh --student);
    # None (default): from scratch; at this size the pre-trained one made our student worse (README)
    pretrained_dir: str | None = None
    pretrain_epochs: int = 3  # pre-training the student here (when the saved one is missing)
    timing: str = "measured"  # "measured" wall-clock answers; "simulated": a FLOPs cost model (tests)

    def __post_init__(self):
        if self.passes < 1 or self.timed < 2 or self.budget < self.timed * self.passes:
            raise ValueError(
                f"need passes >= 1, timed >= 2 and budget >= timed x passes; got budget {self.budget}, "
                f"timed {self.timed}, passes {self.passes}"
            )
        if self.retime not in ("uniform", "adaptive"):
            raise ValueError(f"retime must be 'uniform' or 'adaptive'; got {self.retime!r}")
        if self.timing not in ("measured", "simulated"):
            raise ValueError(f"timing must be 'measured' or 'simulated'; got {self.timing!r}")


@contextlib.contextmanager
def phase(summary: dict, name: str):
    """Time one phase of the demo: one printed line with its duration, kept in summary["phases"]."""
    start = time.perf_counter()
    print(f"[demo] {name} ...", flush=True)
    try:
        yield
    finally:
        seconds = round(time.perf_counter() - start, 1)
        summary.setdefault("phases", {})[name] = seconds
        print(f"[demo] {name}: {seconds:.1f} s", flush=True)


def run(out_dir: Path, data_dir=None, config: DemoConfig = DemoConfig()) -> dict:
    """Run the demo; returns (and writes to out_dir/summary.json) what it measured."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"config": dataclasses.asdict(config), "datasets": {}, "load_average": _load_average()}
    saved = None
    if not config.train_victim and config.victim_dir is not None:
        saved = _saved_model(config.victim_dir, "victim")
    victim_dataset = saved[3]["config"]["dataset"] if saved else "cifar10"
    sets = {}
    with phase(summary, "data"):  # only the sets the demo uses: the victim's test set, the attacker's
        for name, split in ((victim_dataset, "test"), ("tinyimagenet", "train"), ("tinyimagenet", "val")):
            start = time.perf_counter()
            sets[f"{name}/{split}"] = ds = data.load(name, split, data_dir=data_dir)
            summary["datasets"][f"{name}/{split}"] = {
                "images": len(ds),
                "shape": list(ds.image_shape),
                "classes": ds.num_classes,
                "load_seconds": round(time.perf_counter() - start, 3),
            }
        figure = out_dir / "datasets.png"
        rows = [(k, np.asarray(data.to_input_shape(v.images[:8], VICTIM_INPUT))) for k, v in sets.items()]
        _plot_rows(rows, figure)
    summary["figure"] = str(figure)
    summary["devices"] = [str(d) for d in jax.devices()]
    with phase(summary, "victim"):
        if saved is None:
            saved = _train_demo_victim(out_dir, data_dir, config)
        summary["victim"] = _victim_part(saved, sets[f"{victim_dataset}/test"])
    with phase(summary, "student"):
        pretrained = None  # the model folder whose backbone the student starts from
        if config.pretrained_dir is not None:
            folder = Path(config.pretrained_dir)
            if _saved_model(folder, "pre-trained student") is None:
                folder = _pretrain_student(out_dir, data_dir, config, len(sets["tinyimagenet/train"]))
            pretrained = str(folder / "model")
        summary["pretrained"] = pretrained
    with phase(summary, "attack"):
        attack = _attack_part(out_dir, saved, sets, config, pretrained)
    summary["attack"] = attack
    summary["claims"] = check_claims(attack)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def check_claims(attack: dict) -> dict:
    """Each claim of `CLAIMS`: passed or not, with the numbers it was judged on."""
    ours, knockoff = attack["table"]["ours"], attack["table"]["knockoff"]
    victim_acc, victim_cc = ours["victim_accuracy"], ours["victim_mean_flops"]
    balanced = attack["exit_prediction"]["aligned_balanced_accuracy"]
    out = {
        "exits_found": attack["estimated_exits"] == attack["victim_exits"],
        "exit_accuracy": balanced >= 0.90,
        "utility": ours["accuracy"] >= 0.6 * victim_acc and ours["accuracy"] >= knockoff["accuracy"] - 0.03,
        "strategy_test": ours["closeness"] >= knockoff["closeness"] + 0.20,
        "strategy_natural": ours["closeness_queries"] >= knockoff["closeness_queries"] + 0.20,
        # closer, not merely lower: a copy that leaves earlier than the victim is cheaper but has not
        # copied the strategy (a global threshold often does)
        "cost": ours["mean_flops"] <= 1.2 * victim_cc
        and abs(ours["mean_flops"] - victim_cc) < abs(knockoff["mean_flops"] - victim_cc),
    }
    return {name: bool(ok) for name, ok in out.items()}


def _saved_model(folder, what: str):
    """(net, variables, thresholds, result.json) of a model saved by train-victim, or None (said why)
    when it is missing or cannot be read: the caller trains one instead."""
    from mexjax.checkpoint import CheckpointError

    folder = Path(folder)
    try:
        result = json.loads((folder / "result.json").read_text())
        net, variables, thresholds, _ = nets.load(folder / "model", require_checksums=True)
    except (OSError, ValueError, KeyError, CheckpointError) as err:
        print(f"[demo] cannot use the {what} in {folder} ({err}): training one here")
        return None
    return net, variables, thresholds, result


def train_or_set_aside(config, victim_dir: Path) -> dict:
    """Train (or resume) the demo's victim in victim_dir. A run there from other settings or another
    version of the network (its checkpoint does not fit) is moved aside, not deleted, and the victim is
    trained afresh: a rerun after an update must not stop on its own cache."""
    from mexjax import victim_training
    from mexjax.checkpoint import CheckpointError

    try:
        return victim_training.train_victim(config, victim_dir)
    except CheckpointError as err:
        aside = victim_dir.with_name(f"{victim_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        victim_dir.rename(aside)
        print(f"[demo] {err}: moved it to {aside} and training the victim afresh")
        return victim_training.train_victim(config, victim_dir)


def _train_demo_victim(out_dir: Path, data_dir, config: DemoConfig):
    """Train the demo's victim here, a shorter run of the committed one's recipe (a 4-exit VGG16-SDN of
    width 1/4 on CIFAR-10): (net, variables, thresholds, result)."""
    from mexjax import victim_training

    victim_config = victim_training.VictimConfig(
        arch="vgg16",
        dataset="cifar10",
        num_exits=4,
        width=0.25,
        epochs=config.victim_epochs,
        batch_size=128 if config.victim_images >= 1280 else 8,
        held_out=max(16, min(5000, config.victim_images // 4)),
        train_subset=config.victim_images,
        learning_rate=0.05,
        seed=config.seed,
        data_dir=data_dir,
    )
    print(
        f"[demo] victim: a 4-exit VGG16-SDN (width 1/4) on {config.victim_images} CIFAR-10 images, "
        f"{config.victim_epochs} epochs"
    )
    train_or_set_aside(victim_config, out_dir / "victim")
    return _saved_model(out_dir / "victim", "victim just trained")


def _pretrain_student(out_dir: Path, data_dir, config: DemoConfig, images: int) -> Path:
    """Pre-train the attacker's student backbone on its own labelled TinyImageNet images (at the
    victim's input size), as the committed one was: returns the folder."""
    from mexjax import victim_training

    pretrain_config = victim_training.VictimConfig(
        arch="vgg16",
        dataset="tinyimagenet",
        num_exits=4,  # the ICs supervise the deep layers too (without them the last exit lagged)
        width=config.student_width,
        input_size=VICTIM_INPUT[0],
        epochs=config.pretrain_epochs,
        batch_size=128 if images >= 1280 else 8,
        held_out=max(16, min(1000, images // 10)),
        recipe="adam",
        learning_rate=1e-3,
        seed=config.seed,
        data_dir=data_dir,
    )
    print(f"[demo] pre-training the student backbone on TinyImageNet, {config.pretrain_epochs} epochs")
    folder = out_dir / "student_pretrained"
    train_or_set_aside(pretrain_config, folder)
    return folder


def _victim_part(saved, test: data.Dataset) -> dict:
    """Real early exit on the victim: the three inference paths agree on its test images."""
    net, variables, thresholds, result = saved
    sample = data.fit_dataset(test.take(np.arange(min(200, len(test)))), net.input_shape)
    runner = net.runner(tile=1, buckets=(8, 32, 128, 256))
    exit_a, probs_a = runner.policy(variables, sample.images, thresholds)
    exit_c, probs_c = runner.early_exit_batched(variables, sample.images, thresholds)
    singles = [
        runner.early_exit_single(variables, sample.images[i : i + 1], thresholds)
        for i in range(min(32, len(sample)))
    ]
    agree = bool(
        np.array_equal(exit_a, exit_c)
        and np.array_equal(probs_a, probs_c)
        and all(e == exit_a[i] and np.array_equal(p, probs_a[i]) for i, (e, p) in enumerate(singles))
    )
    flops = np.asarray(result["exit_flops"], np.float64)
    return {
        "accuracy_per_exit": result["test"]["accuracy_per_exit"],
        "thresholds": result["thresholds"],
        "accuracy_early_exit": result["test"]["accuracy_early_exit"],
        "flops_ratio": result["test"]["flops_ratio"],
        "exit_histogram": result["test"]["exit_histogram"],
        "inference_paths_agree": agree,
        "sample_mean_flops_ratio": round(float(flops[exit_a].mean() / flops[-1]), 4),
        "minutes": result["minutes"],
        "dataset": result["config"]["dataset"],
        "arch": result["config"]["arch"],
        "width": result["config"]["width"],
    }


def attacker_images(sets: dict, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(query pool, held-out images) at the victim's input size: every TinyImageNet image the attacker
    holds (train and val, shuffled), less `held_out` val images kept for CLO on natural images."""
    val = sets["tinyimagenet/val"]
    if held_out >= len(val):
        raise ValueError(f"held_out={held_out} leaves no TinyImageNet val image to query ({len(val)})")
    order = np.random.default_rng(seed).permutation(len(val))
    held = val.images[order[:held_out]]
    pool = np.concatenate([sets["tinyimagenet/train"].images, val.images[order[held_out:]]])
    pool = pool[np.random.default_rng(seed + 1).permutation(len(pool))]
    return data.fit_to_input(pool, VICTIM_INPUT), data.fit_to_input(held, VICTIM_INPUT)


def _attack_part(out_dir: Path, saved, sets: dict, config: DemoConfig, pretrained: str | None) -> dict:
    """Steal the demo victim through its timing side channel, with KnockoffNets beside it.

    Same footing: both spend the same query budget (ours: `timed` images timed `passes` times each,
    the rest of the budget as distinct images asked once; KnockoffNets: `budget` distinct images),
    both train the same (pre-trained) student, KnockoffNets for at least as many example-steps.
    CLO is measured on the victim's test set and on
    natural images never queried.
    """
    from mexjax import metrics, oracle
    from mexjax.attacks import steal

    net, variables, thresholds, result = saved
    pool, held = attacker_images(sets, config.held_out, config.seed)
    n_ours = min(config.timed + config.budget - config.timed * config.passes, len(pool))
    n_knockoff = min(config.budget, len(pool))
    query_images = pool[:n_ours]
    test = data.fit_dataset(sets[f"{result['config']['dataset']}/test"], net.input_shape)
    timing = "measured" if config.timing == "measured" else oracle.SimulatedTiming(scale=0.05)
    victim = oracle.Oracle(net, variables, thresholds, budget=config.budget, timing=timing, progress=True)
    print(
        f"[demo] stealing with {n_ours} TinyImageNet images: {config.timed} timed {config.passes} times "
        f"({config.retime}), the rest asked once (budget {config.budget} queries)"
    )
    steal_config = steal.StealConfig(
        arch="vgg16",
        width=config.student_width,
        epochs=config.student_epochs,
        batch_size=config.student_batch_size,
        passes=config.passes,
        retime=config.retime,
        balance_exits=config.balance_exits,
        timed_share=min(1.0, config.timed / n_ours),
        pretrained=pretrained,
        seed=config.seed,
    )
    ours = steal.timing_attack(victim, query_images, steal_config, workdir=None)
    k = ours.net.num_exits
    knockoff_oracle = oracle.Oracle(net, variables, thresholds, budget=config.budget, timing=timing)
    knockoff_epochs = max(1, int(np.ceil(config.student_epochs * n_ours / n_knockoff)))
    print(f"[demo] KnockoffNets: {n_knockoff} distinct queries, {knockoff_epochs} epochs, {k} exits")
    knockoff_config = dataclasses.replace(steal_config, num_exits=k, epochs=knockoff_epochs)
    knockoff = steal.knockoff(knockoff_oracle, pool[:n_knockoff], knockoff_config, workdir=None)
    true = oracle.true_exits(victim, query_images[: len(ours.estimated_exits)])
    prediction = metrics.exit_prediction(ours.estimated_exits, true)
    rows = {}
    for name, stolen in (("ours", ours), ("knockoff", knockoff)):
        rows[name] = steal.evaluate(victim, stolen, test.images, test.labels)
        on_held = steal.evaluate(victim, stolen, held, np.zeros(len(held), np.int32))
        rows[name]["closeness_queries"] = on_held["closeness"]
        rows[name]["exit_agreement_queries"] = on_held["exit_agreement"]
    _plot_runtimes(ours.runtimes, true, ours.boundaries, out_dir / "runtimes.png")
    _plot_exit_shares(rows, out_dir / "exits_test.png")
    return {
        "queries": n_ours,
        "timed": len(ours.estimated_exits),
        "budget": config.budget,
        "queries_used": {"ours": ours.queries_used, "knockoff": knockoff.queries_used},
        "knockoff_queries": n_knockoff,
        "held_out_queries": len(held),
        "timing": ours.timing,
        "passes": config.passes,
        "retime": config.retime,
        "estimated_exits": k,
        "victim_exits": net.num_exits,
        "true_exit_histogram": np.bincount(true, minlength=net.num_exits).tolist(),
        "exit_prediction": {
            key: prediction[key]
            for key in (
                "accuracy",
                "balanced_accuracy",
                "aligned_accuracy",
                "aligned_balanced_accuracy",
                "alignment",
                "confusion",
            )
        },
        "best_boundary": metrics.best_boundary_accuracy(ours.runtimes, true),
        "table": rows,
        "figure": str(out_dir / "runtimes.png"),
        "exit_figure": str(out_dir / "exits_test.png"),
    }


def _plot_runtimes(runtimes, true, bounds, path: Path):
    from matplotlib.figure import Figure  # no pyplot: a saved file must not change a notebook's backend

    from mexjax import exits

    t = np.asarray(runtimes) * 1e3
    grid = np.linspace(t.min() * 0.95, np.percentile(t, 99.5) * 1.1, 600)
    density = np.asarray(exits.kde(np.log(t), np.log(grid), "silverman")) / grid
    fig = Figure(figsize=(8, 3.4))
    ax = fig.subplots()
    bins = np.linspace(grid[0], grid[-1], 120)
    for e in range(int(true.max()) + 1):
        ax.hist(t[true == e], bins=bins, alpha=0.5, label=f"true exit {e + 1}", density=False)
    ax2 = ax.twinx()
    ax2.plot(grid, density, color="black", lw=1)
    ax2.set_yticks([])
    for b in bounds:
        ax.axvline(b * 1e3, color="red", ls="--", lw=1)
    ax.set(xlabel="response time (ms, fastest of the passes)", ylabel="queries",
           title="victim response times, estimated exit boundaries (red) and true exits")  # fmt: skip
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_exit_shares(rows: dict, path: Path):
    """Share of the victim's test images leaving at each exit: the victim, and each student under its
    own thresholds (the output strategy a copy should reproduce)."""
    from matplotlib.figure import Figure  # no pyplot: a saved file must not change a notebook's backend

    first = next(iter(rows.values()))
    bars = {"victim": first["victim_exit_histogram"]} | {n: r["exit_histogram"] for n, r in rows.items()}
    k = max(len(h) for h in bars.values())
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.subplots()
    width = 0.8 / len(bars)
    for i, (name, hist) in enumerate(bars.items()):
        share = np.asarray(hist, np.float64) / max(1, sum(hist))
        ax.bar(np.arange(len(hist)) + (i - (len(bars) - 1) / 2) * width, share, width, label=name)
    ax.set_xticks(np.arange(k), [f"exit {e + 1}" for e in range(k)])
    ax.set(ylabel="share of test images", title="where the test images leave: victim and students")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_rows(rows, path: Path):
    from matplotlib.figure import Figure  # no pyplot: a saved file must not change a notebook's backend

    cols = max(len(images) for _, images in rows)
    fig = Figure(figsize=(cols * 1.1, len(rows) * 1.25))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
        axes[r, 0].set_title(title, loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
