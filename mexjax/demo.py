"""The CPU-sized demo behind the README's main command.

End to end, in timed phases: the data it uses (the victim's test set and the attacker's TinyImageNet
images, decoded once, then cached); the victim (a saved one given with `victim_dir`, else a small
multi-exit VGG16-SDN trained here on FashionMNIST with its thresholds chosen on held-out images), whose
three inference paths (all exits, batch-1 early exit, batched early exit) are run and compared; then
the stealing attack through the timing side channel with KnockoffNets beside it at the same budget.
Figures and a JSON summary are written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import data, nets

VICTIM_INPUT = (32, 32, 3)
ATTACKER_SETS = (("tinyimagenet", "train"), ("tinyimagenet", "val"))  # the attacker's natural images


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


def run(
    out_dir: Path,
    data_dir=None,
    seed: int = 0,
    victim_images: int = 20000,
    victim_epochs: int = 4,
    queries: int = 2000,
    student_epochs: int = 10,
    victim_dir: Path | None = None,
) -> dict:
    """Run the demo; returns (and writes to out_dir/summary.json) what it measured.

    victim_dir: a victim saved by `python -m mexjax train-victim` to attack instead of training the
    FashionMNIST one here (a missing or damaged one is reported and the demo trains its own)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    summary = {"datasets": {}, "skipped": {}}
    saved = _saved_victim(victim_dir) if victim_dir is not None else None
    victim_dataset = saved[3]["config"]["dataset"] if saved else "fashion_mnist"
    rows = []
    with phase(summary, "data"):  # only the sets the demo uses: the victim's test set, the attacker's
        for name, split in ((victim_dataset, "test"), *ATTACKER_SETS):
            start = time.perf_counter()
            try:
                ds = data.load(name, split, data_dir=data_dir)
            except data.DataError as err:
                summary["skipped"][f"{name}/{split}"] = str(err)
                print(f"[demo] skipping {name}/{split}: {err}")
                continue
            seconds = time.perf_counter() - start
            key, pick_key = jax.random.split(key)
            sample = data.subset(ds, pick_key, 8)
            fitted = data.to_input_shape(sample.images, VICTIM_INPUT)
            mean, std = data.channel_stats(ds.images[:5000])
            summary["datasets"][f"{name}/{split}"] = {
                "images": len(ds),
                "shape": list(ds.image_shape),
                "classes": ds.num_classes,
                "load_seconds": round(seconds, 3),
                "channel_mean": [round(float(m), 4) for m in mean],
                "channel_std": [round(float(s), 4) for s in std],
            }
            rows.append((f"{name}/{split}", np.asarray(fitted)))
        key, noise_key, aug_key = jax.random.split(key, 3)
        noise = data.noise_images(noise_key, 8, VICTIM_INPUT)
        rows.append(("uniform noise queries", noise))
        if rows:
            augmented = jax.jit(data.augment)(aug_key, rows[0][1])
            rows.append((f"{rows[0][0]} augmented (crop+flip, jit)", np.asarray(augmented)))
        figure = out_dir / "datasets.png"
        _plot_rows(rows, figure)
    summary["figure"] = str(figure)
    summary["devices"] = [str(d) for d in jax.devices()]
    have_test = f"{victim_dataset}/test" in summary["datasets"]
    if have_test and (saved is not None or victim_images > 0):
        with phase(summary, "victim"):
            if saved is None:
                saved = _train_demo_victim(out_dir, data_dir, seed, victim_images, victim_epochs)
            summary["victim"] = _victim_part(saved, data_dir)
        have_queries = any(k.startswith("tinyimagenet/") for k in summary["datasets"])
        if have_queries and queries > 0:
            with phase(summary, "attack"):
                try:
                    summary["attack"] = _attack_part(out_dir, saved, data_dir, seed, queries, student_epochs)
                except ValueError as err:  # e.g. the timing shows a single exit: say so, keep the rest
                    summary["attack"] = {"error": str(err)}
                    print(f"[demo] the attack stopped: {err}")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _saved_victim(victim_dir: Path):
    """(net, variables, thresholds, result.json) of a saved victim, or None (said why) when it is
    missing or cannot be read."""
    from mexjax.checkpoint import CheckpointError

    victim_dir = Path(victim_dir)
    try:
        result = json.loads((victim_dir / "result.json").read_text())
        net, variables, thresholds, _ = nets.load(victim_dir / "model")
    except (OSError, ValueError, KeyError, CheckpointError) as err:
        print(f"[demo] cannot use the victim in {victim_dir} ({err}): training the demo's own victim")
        return None
    return net, variables, thresholds, result


def train_or_set_aside(config, victim_dir: Path) -> dict:
    """Train (or resume) the demo's victim in victim_dir. A run there from other settings or another
    version of the network (its checkpoint does not fit) is moved aside, not deleted, and the victim is
    trained afresh: a rerun after an update must not stop on its own cache."""
    from mexjax import victim
    from mexjax.checkpoint import CheckpointError

    try:
        return victim.train_victim(config, victim_dir)
    except CheckpointError as err:
        aside = victim_dir.with_name(f"{victim_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        victim_dir.rename(aside)
        print(f"[demo] {err}: moved it to {aside} and training the victim afresh")
        return victim.train_victim(config, victim_dir)


def _train_demo_victim(out_dir: Path, data_dir, seed: int, images: int, epochs: int):
    """Train a narrow VGG16-SDN on a FashionMNIST subset: (net, variables, thresholds, result)."""
    from mexjax import victim

    held_out = max(16, images // 10)
    config = victim.VictimConfig(
        arch="vgg16",
        dataset="fashion_mnist",
        num_exits=6,
        width=0.25,
        epochs=epochs,
        batch_size=128 if images >= 1280 else 8,
        held_out=held_out,
        train_subset=images,
        threshold=0.9,  # the global threshold of the reference victims
        learning_rate=0.03,  # a short run: lr 0.03 (SDN's 0.1 leaves the last exit behind) ...
        milestones=(0.75,),  # ... for three quarters of it, then 0.003
        seed=seed,
        data_dir=data_dir,
    )
    print(f"[demo] victim: a 6-exit VGG16-SDN (width 1/4) on {images} FashionMNIST images, {epochs} epochs")
    result = train_or_set_aside(config, out_dir / "victim")
    net, variables, thresholds, _ = nets.load(out_dir / "victim" / "model")
    return net, variables, thresholds, result


def _victim_part(saved, data_dir) -> dict:
    """Real early exit on the victim: the three inference paths agree on its test images."""
    from mexjax import victim

    net, variables, thresholds, result = saved
    dataset = result["config"]["dataset"]
    test = data.load(dataset, "test", data_dir=data_dir)
    sample = victim.prepare(test.take(np.arange(min(200, len(test)))), net.input_shape)
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
        "dataset": dataset,
        "arch": result["config"]["arch"],
        "width": result["config"]["width"],
    }


def _attack_part(out_dir: Path, saved, data_dir, seed: int, queries: int, epochs: int) -> dict:
    """Steal the demo victim through its timing side channel, with KnockoffNets beside it.

    Same footing: both spend the same query budget (ours: `queries` images timed 5 times each;
    KnockoffNets: 5 x `queries` distinct images) and train the same student for the same number of
    example-steps. CLO is measured on the victim's test set and on natural images never queried.
    """
    from mexjax import metrics, oracle
    from mexjax import victim as victim_mod
    from mexjax.attacks import steal

    passes = 5
    net, variables, thresholds, result = saved
    try:
        pool = data.load("tinyimagenet", "train", data_dir=data_dir)
    except data.DataError:
        pool = data.load("tinyimagenet", "val", data_dir=data_dir)
    pool = data.subset(pool, jax.random.key(seed + 1), min(passes * queries, len(pool)))
    pool_images = np.asarray(data.to_input_shape(pool.images, net.input_shape))
    query_images = pool_images[:queries]
    held = data.load("tinyimagenet", "val", data_dir=data_dir)
    held = data.subset(held, jax.random.key(seed + 2), min(1000, len(held)))
    held_images = np.asarray(data.to_input_shape(held.images, net.input_shape))
    test = data.load(result["config"]["dataset"], "test", data_dir=data_dir)
    test = victim_mod.prepare(test, net.input_shape)
    budget = passes * len(query_images)
    victim = oracle.Oracle(net, variables, thresholds, budget=budget)
    print(
        f"[demo] stealing with {len(query_images)} TinyImageNet queries (fastest of {passes} timed passes "
        f"each; budget {budget} queries)"
    )
    config = steal.StealConfig(
        arch="vgg16", width=0.25, epochs=epochs, batch_size=64, passes=passes, seed=seed
    )
    ours = steal.steal(victim, query_images, config, workdir=None)
    k = ours.net.num_exits
    knockoff_oracle = oracle.Oracle(net, variables, thresholds, budget=budget)
    knockoff_epochs = max(1, round(epochs * len(query_images) / len(pool_images)))
    print(f"[demo] KnockoffNets: {len(pool_images)} distinct queries, {knockoff_epochs} epochs, {k} exits")
    knockoff_config = dataclasses.replace(config, num_exits=k, epochs=knockoff_epochs)
    knockoff = steal.knockoff(knockoff_oracle, pool_images, knockoff_config, workdir=None)
    true = oracle.true_exits(victim, query_images)
    prediction = metrics.exit_prediction(ours.estimated_exits, true)
    rows = {}
    for name, result in (("ours", ours), ("knockoff", knockoff)):
        rows[name] = steal.evaluate(victim, result, test.images, test.labels)
        on_queries = steal.evaluate(victim, result, held_images, np.zeros(len(held_images), np.int32))
        rows[name]["closeness_queries"] = on_queries["closeness"]
        rows[name]["exit_agreement_queries"] = on_queries["exit_agreement"]
    _plot_runtimes(ours.runtimes, true, ours.boundaries, out_dir / "runtimes.png")
    _plot_exit_shares(rows, out_dir / "exits_test.png")
    return {
        "queries": len(query_images),
        "budget": budget,
        "knockoff_queries": len(pool_images),
        "held_out_queries": len(held_images),
        "timing": ours.timing,
        "passes": ours.passes,
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
