"""The tables of the multi-exit stealing attack (seed 000), one runner each.

    .venv/bin/python experiments/steal.py table1 --scale cpu --datasets fashion_mnist
    .venv/bin/python experiments/steal.py table2 --scale cpu --datasets fashion_mnist
    .venv/bin/python experiments/steal.py table3 --scale paper          # CIFAR-10, 4-exit victims
    .venv/bin/python experiments/steal.py exits --scale cpu --datasets fashion_mnist   # 3-6 exits

table1: victims (VGG16 / ResNet56 / MobileNet SDN) x datasets x {Knock, Noise, ESA, Ours}: ACC, CLO,
        CC. table2: the exit-prediction accuracy of the timing analysis (no student is trained).
table3: student backbone != victim backbone (4-exit victims, CIFAR-10). exits: victims with 3-6 exits.

Scales: `cpu` (narrow victims on a training subset, 2,000 queries; sized for a 2-core machine),
`paper` (full-width victims, SDN's 100-epoch recipe, the whole 20k TinyImageNet query pool; for a GPU)
and `tiny` (for the tests). Every finished cell is appended to experiments/results/steal_<table>_<scale>.jsonl
and the Markdown table beside it is rewritten with the published numbers in the next column; rerunning
skips finished cells (an interrupted cell restarts; victims resume from their checkpoints).

Fairness: all four methods get the same query budget B and train the same student (the attacker's
backbone with the number of exits the timing analysis found) for the same number of example-steps.
Ours spends B on B/r distinct images timed r times each; the baselines spend it on B distinct images.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import finished, machines, pick_scale, stamp
from experiments.cli import runner_parser
from mexjax import data, metrics, nets, oracle, victim_training
from mexjax.attacks import steal
from mexjax.results import append_record, read_records

ARCHS = ("vgg16", "resnet56", "mobilenet")
METHODS = ("ours", "knockoff", "noise", "esa")
DATASETS = ("cifar10", "gtsrb", "svhn", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class Scale:
    victim_images: int | None  # training subset (None: all)
    victim_epochs: int
    victim_lr: float | None  # None: SDN's 0.1
    victim_milestones: tuple[float, ...] | None  # None: SDN's
    threshold: float | None  # a global threshold; None: SDN's rule on held-out images
    width: float  # victims and students
    num_exits: int  # victims of table 1 / 2
    queries: int  # distinct images of ours (the budget is queries x passes)
    passes: int
    student_epochs: int  # of ours; the baselines train for the same example-steps
    test_images: int | None
    held_out_queries: int  # natural images never queried, for CLO on the query distribution
    timing: str  # "measured" or "simulated"
    esa_rounds: int
    esa_steps: int


SCALES = {
    "tiny": Scale(
        victim_images=512, victim_epochs=1, victim_lr=0.03, victim_milestones=(0.75,), threshold=0.5,
        width=0.125, num_exits=3, queries=96, passes=2, student_epochs=1, test_images=128,
        held_out_queries=64, timing="simulated", esa_rounds=2, esa_steps=3,
    ),
    "cpu": Scale(
        victim_images=20000, victim_epochs=4, victim_lr=0.03, victim_milestones=(0.75,), threshold=0.9,
        width=0.25, num_exits=6, queries=2000, passes=5, student_epochs=10, test_images=2000,
        held_out_queries=1000, timing="measured", esa_rounds=5, esa_steps=10,
    ),
    "paper": Scale(
        victim_images=None, victim_epochs=100, victim_lr=None, victim_milestones=None, threshold=None,
        width=1.0, num_exits=7, queries=6000, passes=3, student_epochs=50, test_images=None,
        held_out_queries=5000, timing="measured", esa_rounds=10, esa_steps=30,
    ),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


# Published numbers (seed 000, Table 1): victim ACC | Knock | Noise | ESA | Ours as ACC %, CLO %, CC multiple.
_PAPER_T1_TEXT = """
vgg16     cifar10       91.75 | 88.25 31.09 1.41 | 33.74 21.34 1.56 | 82.43 27.45 1.45 | 88.33 63.27 1.04
vgg16     gtsrb         97.13 | 95.78 24.40 1.72 | 45.21 16.78 1.42 | 86.17 18.76 1.68 | 95.42 71.76 1.15
vgg16     svhn          95.68 | 91.99 23.01 1.47 | 50.03 38.12 1.64 | 87.29 32.89 1.37 | 91.41 64.85 0.98
vgg16     fashion_mnist 94.40 | 91.48 29.75 1.36 | 38.56 30.45 1.32 | 90.92 20.34 1.29 | 91.69 57.49 1.16
resnet56  cifar10       89.39 | 86.22 34.69 1.28 | 31.89 12.89 1.49 | 83.74 38.12 1.56 | 86.88 58.90 1.03
resnet56  gtsrb         96.66 | 92.19 18.18 1.80 | 53.12 25.67 1.62 | 85.65 15.67 1.61 | 92.00 64.30 1.20
resnet56  svhn          95.11 | 92.34 32.77 1.34 | 42.45 35.21 1.47 | 89.11 23.98 1.41 | 92.53 56.39 1.05
resnet56  fashion_mnist 93.34 | 90.81 18.87 1.42 | 34.28 18.56 1.38 | 88.02 30.21 1.43 | 90.26 51.65 1.15
mobilenet cifar10       88.75 | 83.35 41.92 1.39 | 49.76 31.09 1.53 | 82.79 17.54 1.44 | 83.39 59.72 1.05
mobilenet gtsrb         96.77 | 91.35 30.77 1.59 | 52.01 14.23 1.46 | 80.34 25.87 1.54 | 91.87 69.42 1.28
mobilenet svhn          93.72 | 90.52 41.86 1.41 | 36.45 29.76 1.35 | 86.44 19.23 1.36 | 89.37 62.44 1.11
mobilenet fashion_mnist 93.08 | 89.43 27.19 1.29 | 30.87 33.89 1.47 | 84.58 28.65 1.50 | 89.37 59.60 1.07
"""


def _parse_paper_t1(text: str) -> dict:
    table = {}
    for line in text.strip().splitlines():
        head, *methods = line.split("|")
        arch, dataset, victim_acc = head.split()
        cells = {"victim": (float(victim_acc),)}
        for name, cell in zip(("knockoff", "noise", "esa", "ours"), methods, strict=True):
            cells[name] = tuple(float(v) for v in cell.split())
        table[(arch, dataset)] = cells
    return table


PAPER_T1 = _parse_paper_t1(_PAPER_T1_TEXT)
# Table 2: exit-prediction accuracy (mean; the paper gives a small +- beside each).
PAPER_T2 = {
    "vgg16": {"cifar10": 0.998, "gtsrb": 0.999, "svhn": 0.999, "fashion_mnist": 0.998},
    "resnet56": {"cifar10": 1.0, "gtsrb": 0.998, "svhn": 1.0, "fashion_mnist": 0.999},
    "mobilenet": {"cifar10": 0.998, "gtsrb": 1.0, "svhn": 0.999, "fashion_mnist": 0.998},
}
# Table 3 (CIFAR-10, 4 exits): (student, victim) -> ACC %, CLO %, CC multiple.
PAPER_T3 = {
    ("vgg16", "vgg16"): (88.33, 63.27, 1.04), ("vgg16", "resnet56"): (86.47, 58.86, 1.08),
    ("vgg16", "mobilenet"): (86.54, 61.70, 1.05), ("resnet56", "vgg16"): (87.70, 53.59, 1.06),
    ("resnet56", "resnet56"): (88.68, 64.24, 1.03), ("resnet56", "mobilenet"): (86.76, 55.52, 1.05),
    ("mobilenet", "vgg16"): (82.68, 50.04, 1.06), ("mobilenet", "resnet56"): (82.49, 57.81, 1.08),
    ("mobilenet", "mobilenet"): (83.39, 59.72, 1.05),
}  # fmt: skip
PAPER_EXITS = (
    "the number of exits (3-6) changes accuracy and closeness very little; total cost falls slightly"
)


def results_path(results_dir: Path, table: str, scale: str) -> Path:
    return results_dir / f"steal_{table}_{scale}.jsonl"


# --- victims ------------------------------------------------------------------------------------------


def victim_config(
    dataset: str, arch: str, num_exits: int, scale: Scale, data_dir=None
) -> victim_training.VictimConfig:
    return victim_training.VictimConfig(
        arch=arch,
        dataset=dataset,
        num_exits=num_exits,
        width=scale.width,
        epochs=scale.victim_epochs,
        batch_size=128 if (scale.victim_images or 10**9) >= 1280 else 32,
        learning_rate=scale.victim_lr,
        milestones=scale.victim_milestones,
        held_out=5000 if scale.victim_images is None else max(64, scale.victim_images // 10),
        train_subset=scale.victim_images,
        threshold=scale.threshold,
        data_dir=data_dir,
    )


def load_victim(dataset, arch, num_exits, scale_name, *, outputs: Path, data_dir=None, progress=True):
    """Train (or resume, or load) a victim; returns (net, variables, thresholds, result record)."""
    out = outputs / "victims" / scale_name / f"{dataset}_{arch}_k{num_exits}"
    if not (out / "result.json").exists():
        print(f"[steal] training victim {out.name} ({scale_name} scale)")
    config = victim_config(dataset, arch, num_exits, get_config(scale_name), data_dir)
    return victim_training.load_or_train(config, out, progress=progress)


@dataclasses.dataclass
class Setting:
    """Everything a cell needs besides the method: the victim, its test set and the attacker's pools."""

    dataset: str
    arch: str
    net: nets.MultiExitNet
    variables: dict
    thresholds: np.ndarray
    victim_record: dict
    test: data.Dataset
    pool: np.ndarray  # natural query images (TinyImageNet train), victim input shape
    held_out: np.ndarray  # natural images never queried (TinyImageNet val)


def make_setting(dataset, arch, num_exits, scale_name, *, outputs: Path, data_dir=None, progress=True):
    scale = get_config(scale_name)
    net, variables, thresholds, record = load_victim(
        dataset, arch, num_exits, scale_name, outputs=outputs, data_dir=data_dir, progress=progress
    )
    test = data.load(dataset, "test", data_dir=data_dir)
    if scale.test_images is not None and scale.test_images < len(test):
        test = data.subset(test, jax.random.key(7), scale.test_images)
    test = data.fit_dataset(test, net.input_shape)
    budget = scale.queries * scale.passes
    pool = data.load("tinyimagenet", "train", data_dir=data_dir)
    pool = data.subset(pool, jax.random.key(11), min(budget, len(pool)))
    held = data.load("tinyimagenet", "val", data_dir=data_dir)
    held = data.subset(held, jax.random.key(13), min(scale.held_out_queries, len(held)))
    fit = lambda images: np.asarray(data.to_input_shape(images, net.input_shape))
    return Setting(
        dataset, arch, net, variables, thresholds, record, test, fit(pool.images), fit(held.images)
    )


# --- one cell -----------------------------------------------------------------------------------------


def run_attack(setting: Setting, method: str, scale_name: str, *, student_arch=None, num_exits=None,
               seed=0, progress=True) -> tuple[dict, steal.student_training.StealResult]:  # fmt: skip
    """Run one method against the setting's victim; returns (record, result). Evaluation code."""
    scale = get_config(scale_name)
    timing = "measured" if scale.timing == "measured" else oracle.SimulatedTiming(seconds_per_flop=2e-10)
    budget = scale.queries * scale.passes
    victim_oracle = oracle.Oracle(
        setting.net, setting.variables, setting.thresholds, budget=budget, timing=timing
    )
    config = steal.StealConfig(
        arch=student_arch or setting.arch,
        width=scale.width,
        epochs=scale.student_epochs,
        batch_size=64,
        passes=scale.passes,
        num_exits=num_exits,
        seed=seed,
    )
    steps = scale.queries * scale.student_epochs  # example-steps every student trains for
    base_epochs = max(1, round(steps / len(setting.pool)))
    load = os.getloadavg()[0]  # other work on the machine slows answers unevenly: record it
    started = time.perf_counter()
    if method == "ours":
        result = steal.timing_attack(victim_oracle, setting.pool[: scale.queries], config, progress=progress)
    elif method == "knockoff":
        config = dataclasses.replace(config, epochs=base_epochs)
        result = steal.knockoff(victim_oracle, setting.pool, config, progress=progress)
    elif method == "noise":
        config = dataclasses.replace(config, epochs=base_epochs)
        result = steal.noise_attack(victim_oracle, budget, config, progress=progress)
    elif method == "esa":
        per_round = max(1, round(base_epochs * 2 / (scale.esa_rounds + 1)))  # the data grows each round
        esa = steal.ESAConfig(rounds=scale.esa_rounds, steps=scale.esa_steps, epochs_per_round=per_round)
        result = steal.es_attack(victim_oracle, budget, config, esa, progress=progress)
    else:
        raise ValueError(f"unknown method {method!r}; known: {METHODS}")
    seconds = time.perf_counter() - started
    on_test = steal.evaluate(victim_oracle, result, setting.test.images, setting.test.labels)
    on_queries = steal.evaluate(
        victim_oracle, result, setting.held_out, np.zeros(len(setting.held_out), np.int32)
    )
    record = {
        "dataset": setting.dataset,
        "victim": setting.arch,
        "student": config.arch,
        "method": method,
        "victim_exits": setting.net.num_exits,
        "student_exits": result.net.num_exits,
        "victim_accuracy": on_test["victim_accuracy"],
        "accuracy": on_test["accuracy"],
        "fidelity": on_test["fidelity"],
        "closeness": on_test["closeness"],
        "exit_agreement": on_test["exit_agreement"],
        "closeness_queries": on_queries["closeness"],
        "fidelity_queries": on_queries["fidelity"],
        "exit_agreement_queries": on_queries["exit_agreement"],
        "victim_mean_flops": on_test["victim_mean_flops"],
        "mean_flops": on_test["mean_flops"],
        "cc_ratio": on_test["mean_flops"] / on_test["victim_mean_flops"],
        "victim_exit_histogram": on_test["victim_exit_histogram"],
        "exit_histogram": on_test["exit_histogram"],
        "budget": budget,
        "queries_used": result.queries_used,
        "distinct_queries": result.answered,
        "passes": result.passes,
        "timing": result.timing,
        "student_epochs": result.config.epochs,
        "thresholds_how": result.thresholds_how,
        "thresholds": [round(float(t), 4) for t in result.thresholds],
        "test_images": len(setting.test),
        "held_out_queries": len(setting.held_out),
        "seconds": round(seconds, 1),
        "scale": scale_name,
        **stamp(),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
        "load_before": round(load, 2),
    }
    if method == "ours":
        record["exit_prediction"] = _exit_prediction(victim_oracle, result)
    return record, result


def _exit_prediction(victim_oracle, result) -> dict:
    truth = steal.timing.score_exit_reading(victim_oracle, result, result.query_images)
    return {
        "accuracy": truth["accuracy"],
        "balanced_accuracy": truth["balanced_accuracy"],
        "aligned_accuracy": truth["aligned_accuracy"],
        "aligned_balanced_accuracy": truth["aligned_balanced_accuracy"],
        "estimated_exits": int(result.estimated_exits.max()) + 1,
        "confusion": truth["confusion"],
    }


def run_timing(setting: Setting, scale_name: str, save_to: Path | None = None) -> dict:
    """Table 2's cell: time the queries and read the exits; no student (exit prediction only).

    save_to: an .npz for the runtimes and true exits (to re-analyse the timing without re-measuring)."""
    from mexjax import exits

    scale = get_config(scale_name)
    timing = "measured" if scale.timing == "measured" else oracle.SimulatedTiming(seconds_per_flop=2e-10)
    victim_oracle = oracle.Oracle(
        setting.net, setting.variables, setting.thresholds, budget=scale.queries * scale.passes, timing=timing
    )
    images = setting.pool[: scale.queries]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    answers = victim_oracle.query(images, passes=scale.passes)
    estimated, k = exits.estimate_exits(answers.runtimes)
    true = oracle.true_exits(victim_oracle, images)
    truth = metrics.exit_prediction(estimated, true)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        np.savez(save_to, runtimes=answers.runtimes, true_exits=true, estimated_exits=estimated)
    return {
        "dataset": setting.dataset,
        "victim": setting.arch,
        "victim_exits": setting.net.num_exits,
        "estimated_exits": int(k),
        "true_exit_histogram": np.bincount(true, minlength=setting.net.num_exits).tolist(),
        "accuracy": truth["accuracy"],
        "balanced_accuracy": truth["balanced_accuracy"],
        "best_boundary": metrics.best_boundary_accuracy(answers.runtimes, true),
        "confusion": truth["confusion"],
        "queries": len(images),
        "passes": scale.passes,
        "timing": answers.timing,
        "seconds": round(time.perf_counter() - started, 1),
        "scale": scale_name,
        **stamp(),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
        "load_before": round(load, 2),
    }


# --- tables -------------------------------------------------------------------------------------------


def _cells(table: str, args) -> list[dict]:
    if table == "table1":
        return [dict(dataset=d, arch=a, method=m, num_exits=None) for d in args.datasets for a in args.archs
                for m in args.methods]  # fmt: skip
    if table == "table2":
        return [dict(dataset=d, arch=a, num_exits=None) for d in args.datasets for a in args.archs]
    if table == "table3":
        return [dict(dataset="cifar10", arch=v, student=s, num_exits=4) for v in args.archs for s in ARCHS]
    if table == "exits":
        return [dict(dataset=d, arch="vgg16", num_exits=k) for d in args.datasets for k in (3, 4, 5, 6)]
    raise ValueError(table)


def _key(cell: dict) -> str:
    return "/".join(f"{k}={cell[k]}" for k in sorted(cell))


def select_cells(cells: list[dict], wanted: list[str] | None) -> list[dict]:
    """The cells named in `wanted` (a cell's name, see --list-cells, or its 0-based index, e.g. a SLURM
    array task id), in table order; all of them without `wanted`. An unknown name is an error."""
    if not wanted:
        return cells
    keys = [_key(c) for c in cells]
    chosen = set()
    for name in wanted:
        if name.isdigit() and int(name) < len(cells):
            chosen.add(int(name))
        elif name in keys:
            chosen.add(keys.index(name))
        else:
            raise SystemExit(f"no cell {name!r} in this table (0-{len(cells) - 1}); --list-cells shows them")
    return [c for i, c in enumerate(cells) if i in chosen]


def run_table(table: str, args) -> Path:
    scale = get_config(args.scale)
    results_dir = Path(args.results)
    path = results_path(results_dir, table, args.scale)
    done = finished(path, lambda r: r["cell"])
    settings: dict = {}
    for cell in select_cells(_cells(table, args), args.cells):
        key = _key(cell)
        if key in done and not args.rerun:
            print(f"[steal] {table}: {key} done, skipped")
            continue
        k = cell["num_exits"] or scale.num_exits
        skey = (cell["dataset"], cell["arch"], k)
        try:
            if skey not in settings:
                settings.clear()  # one victim in memory at a time
                settings[skey] = make_setting(*skey, args.scale, outputs=Path(args.outputs),
                                              data_dir=args.data_dir, progress=not args.quiet)  # fmt: skip
        except data.DataError as err:
            print(f"[steal] {table}: {key} skipped: {err}")
            continue
        setting = settings[skey]
        print(f"[steal] {table}: {key}")
        if table == "table2":
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())  # one file per run: reruns keep theirs
            saved = Path(args.outputs) / "timing" / args.scale / f"{key.replace('/', '_')}_{stamp}.npz"
            record = run_timing(setting, args.scale, save_to=saved)
            record["runtimes_file"] = str(saved)
        else:
            method = cell.get("method", "ours")
            student_exits = None
            if method != "ours":  # the baselines train the student that ours found (same footing)
                ours = [r for r in read_records(path) if r["cell"] == _key({**cell, "method": "ours"})]
                student_exits = ours[-1]["student_exits"] if ours else setting.net.num_exits
            record, _ = run_attack(
                setting, method, args.scale, student_arch=cell.get("student"),
                num_exits=student_exits, seed=args.seed, progress=not args.quiet,
            )  # fmt: skip
        record["cell"] = key
        append_record(path, record)
    markdown = path.with_suffix(".md")
    markdown.write_text(TABLE_WRITERS[table](read_records(path), args.scale))
    print(markdown.read_text())
    return path


def _run_label(r: dict) -> str:
    """When a run was made and how busy the machine was just before (1-minute load average)."""
    if "time" not in r:
        return r["date"]
    return f"{r['date']} {r['time']} ({r['load_before']})"


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _header(table: str, title: str, scale: str, records: list[dict]) -> list[str]:
    timing = sorted({f"{r['timing']} timing" for r in records if r.get("timing") not in (None, "none")})
    dates = sorted({r["date"] for r in records})
    return [
        f"# {title} ({scale} scale)",
        "",
        f"Written by `experiments/steal.py {table} --scale {scale}` from "
        f"`{results_path(Path('.'), table, scale).name}` (one JSON line per cell). Machine: "
        f"{machines(records)}. {', '.join(timing).capitalize() or 'No timing'}. "
        f"Date: {', '.join(dates) or '-'}.",
        "",
    ]


def write_table1(records: list[dict], scale: str) -> str:
    lines = _header("table1", "Table 1: stealing multi-exit victims", scale, records)
    lines += [
        "ACC: student accuracy on the victim's test set; CLO: same label at the same exit as the victim on "
        "the test set, and on natural images never queried (CLO q., the query distribution, as the paper "
        "measures it); CC: mean FLOPs per test image as a multiple of the victim's. Each model runs under "
        "its own thresholds with real early exit. Paper: seed 000, Table 1 (full-size victims).",
        "",
        "| victim | dataset | method | ACC | CLO | CLO q. | exit agr. | CC | budget (distinct x passes) "
        "| run (load avg) | paper ACC | paper CLO | paper CC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(("victim", *METHODS))}
    rows = sorted(records, key=lambda r: (r["victim"], r["dataset"], order[r["method"]]))
    seen = set()
    for r in rows:
        paper = PAPER_T1.get((r["victim"], r["dataset"]), {})
        if (r["victim"], r["dataset"]) not in seen:
            seen.add((r["victim"], r["dataset"]))
            pv = paper.get("victim", (None,))[0]
            lines.append(f"| {r['victim']} | {r['dataset']} | victim | {_pct(r['victim_accuracy'])} | | | | "
                         f"1.00 | | | {pv if pv else ''} | | |")  # fmt: skip
        p = paper.get(r["method"], ("", "", ""))
        lines.append(
            f"| {r['victim']} | {r['dataset']} | {r['method']} | {_pct(r['accuracy'])} "
            f"| {_pct(r['closeness'])} "
            f"| {_pct(r['closeness_queries'])} | {_pct(r['exit_agreement'])} | {r['cc_ratio']:.2f} "
            f"| {r['queries_used']} ({r['distinct_queries']} x {r['passes']}) | {_run_label(r)} "
            f"| {p[0]} | {p[1]} | {p[2]} |"
        )
    timed = [r for r in rows if r["method"] == "ours" and "exit_prediction" in r]
    if timed:
        lines += ["", "Ours, exits read from the timing (the baselines train a student with as many):", ""]
    for r in timed:
        e = r["exit_prediction"]
        aligned = metrics.aligned_exit_scores(e["confusion"])
        lines.append(
            f"- {r['victim']} / {r['dataset']} ({_run_label(r)}): {e['estimated_exits']} of "
            f"{r['victim_exits']} exits found; exit prediction {e['accuracy']:.3f} (balanced "
            f"{e['balanced_accuracy']:.3f}), aligned in order {aligned[0]:.3f} (balanced {aligned[1]:.3f})"
        )
    return "\n".join(lines) + "\n"


def write_table2(records: list[dict], scale: str) -> str:
    lines = _header("table2", "Table 2: exit-prediction accuracy of the timing analysis", scale, records)
    lines += [
        "Accuracy of the exit read from each query's response time (fastest of the passes) against the "
        "exit the victim really took; balanced = mean of per-exit recalls; aligned = the same after "
        "mapping the humps found to the true exits in order (a missed exit otherwise makes every later "
        "query count as wrong); best rule = the accuracy / balanced accuracy of the best time thresholds "
        "chosen knowing the true exits (no rule that cuts the time axis can do better on these runtimes: "
        "where it is low, the timing noise is the limit). Paper: seed 000, Table 2.",
        "",
        "| victim | dataset | exits found / true | accuracy | balanced | aligned acc. | aligned bal. "
        "| best rule | queries x passes | true exits of the queries | run (load avg) | paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["victim"], r["dataset"])):
        paper = PAPER_T2.get(r["victim"], {}).get(r["dataset"], "")
        aligned = metrics.aligned_exit_scores(r["confusion"])
        bound = r.get("best_boundary")  # runs before it was recorded have none
        best = f"{bound['accuracy']:.3f} / {bound['balanced_accuracy']:.3f}" if bound else "-"
        lines.append(
            f"| {r['victim']} | {r['dataset']} | {r['estimated_exits']} / {r['victim_exits']} "
            f"| {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {aligned[0]:.3f} | {aligned[1]:.3f} "
            f"| {best} | {r['queries']} x {r['passes']} "
            f"| {r['true_exit_histogram']} | {_run_label(r)} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def write_table3(records: list[dict], scale: str) -> str:
    lines = _header(
        "table3", "Table 3: student backbone vs victim backbone (4 exits, CIFAR-10)", scale, records
    )
    lines += [
        "| student | victim | ACC | CLO | CLO q. | CC | paper ACC | paper CLO | paper CC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["student"], r["victim"])):
        p = PAPER_T3.get((r["student"], r["victim"]), ("", "", ""))
        lines.append(
            f"| {r['student']} | {r['victim']} | {_pct(r['accuracy'])} | {_pct(r['closeness'])} "
            f"| {_pct(r['closeness_queries'])} | {r['cc_ratio']:.2f} | {p[0]} | {p[1]} | {p[2]} |"
        )
    return "\n".join(lines) + "\n"


def write_exits(records: list[dict], scale: str) -> str:
    lines = _header("exits", "Sensitivity to the victim's number of exits", scale, records)
    lines += [
        f"Paper (seed 000, §3.3, no table): {PAPER_EXITS}.",
        "",
        "| dataset | victim exits | exits found | ACC | CLO | CLO q. | CC | victim CC (FLOPs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["dataset"], r["victim_exits"])):
        lines.append(
            f"| {r['dataset']} | {r['victim_exits']} | {r['student_exits']} | {_pct(r['accuracy'])} "
            f"| {_pct(r['closeness'])} | {_pct(r['closeness_queries'])} | {r['cc_ratio']:.2f} "
            f"| {r['victim_mean_flops']:.3g} |"
        )
    return "\n".join(lines) + "\n"


TABLE_WRITERS = {"table1": write_table1, "table2": write_table2, "table3": write_table3, "exits": write_exits}


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument("table", choices=sorted(TABLE_WRITERS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rerun", action="store_true", help="run finished cells again (every run is kept and shown)"
    )
    parser.add_argument("--cells", nargs="+", default=None, metavar="CELL",
                        help="run only these cells: names from --list-cells or 0-based indices (one per "
                        "machine: --cells $SLURM_ARRAY_TASK_ID)")  # fmt: skip
    parser.add_argument("--list-cells", action="store_true", help="print the table's cells with their index")
    args = parser.parse_args(argv)
    if args.list_cells:
        for i, cell in enumerate(_cells(args.table, args)):
            print(f"{i}\t{_key(cell)}")
        return
    if "ours" not in args.methods and args.table == "table1":
        print("[steal] note: without 'ours' the baselines use the victim's true number of exits")
    run_table(args.table, args)


if __name__ == "__main__":
    main()
