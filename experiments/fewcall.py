"""Few-call stealing on a CIFAR-10 q75 victim: accuracy against calls per class.

    .venv/bin/python experiments/fewcall.py --scale cpu      # this machine (narrow students)
    .venv/bin/python experiments/fewcall.py --scale paper    # full victim, ResNet-18 students (GPU)

For each budget of 8, 16, 32, 64, 128 calls per class: the few-call attack (active selection +
self-paced pseudo-labels) on class-matched proxies, and KnockoffNets with the same calls on random
natural images; beside them a student trained on victim-domain data with true labels (the full-data
student, the upper reference). Proxies: the offline default, TinyImageNet images mapped to CIFAR-10
classes (`steal.proxies.TINYIMAGENET_FOR_CIFAR10`). The victim is the SoK runner's VGG16 SDN of the same
scale (trained if missing). Each finished (method, calls) cell appends a record to
experiments/results/fewcall_<scale>.jsonl; rerunning skips finished cells; the Markdown table and
the accuracy-vs-calls plot (PNG) beside it are rewritten.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import slowdown as sok
from experiments._common import finished, machines, pick_scale, stamp
from experiments.cli import runner_parser
from mexjax import data, oracle, victim_training
from mexjax.attacks import steal
from mexjax.results import append_record, read_records

NAMES = {"cifar10": "CIFAR-10 q75", "gtsrb": "GTSRB"}
METHODS = ("fewcall", "knockoff", "full-data", "random-selection", "no-pseudo-labels")
ABLATIONS = {"random-selection": dict(selection="random"), "no-pseudo-labels": dict(self_paced=False)}
CALLS = (8, 16, 32, 64, 128)


@dataclasses.dataclass(frozen=True)
class Scale:
    calls: tuple[int, ...]
    proxies_per_class: int | None  # None: all the mapped pool has (balanced)
    arch: str
    width: float
    epochs: int  # of each training of a round (KnockoffNets: 4x as many on its calls)
    full_data_images: int | None
    full_data_epochs: int
    test_images: int | None
    ablation_calls: tuple[int, ...] = ()  # budgets of the two ablations (random selection, no pseudo-labels)


SCALES = {
    "tiny": Scale(
        calls=(2, 4), proxies_per_class=16, arch="halfalexnet", width=0.125, epochs=1,
        full_data_images=256, full_data_epochs=1, test_images=64, ablation_calls=(2,),
    ),
    "cpu": Scale(
        calls=CALLS, proxies_per_class=None, arch="halfalexnet", width=0.5, epochs=10,
        full_data_images=10_000, full_data_epochs=10, test_images=1000, ablation_calls=(16, 64),
    ),
    "paper": Scale(
        calls=CALLS, proxies_per_class=None, arch="resnet18", width=1.0, epochs=50, full_data_images=None,
        full_data_epochs=60, test_images=None, ablation_calls=CALLS,
    ),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


PAPER = (
    "seed 002: with 32-128 calls per class, few-call stealing beats prior few-call attacks (KnockoffNets "
    "among them) by up to 10 accuracy points on CIFAR-10; accuracy rises with the calls"
)


def _victim(args):
    """The SoK runner's VGG16 SDN of this scale (CIFAR-10), or the same recipe on GTSRB."""
    sok_scale = sok.get_config(args.scale)
    name = f"sok_{args.dataset}_vgg16_k{sok_scale.num_exits}"
    folder = Path(args.outputs) / "victims" / args.scale / name
    config = dataclasses.replace(sok.victim_config("vgg16", sok_scale, args.data_dir), dataset=args.dataset)
    net, variables, thresholds, _ = victim_training.load_or_train(config, folder, progress=not args.quiet)
    return net, variables, thresholds


def _require_proxy_source(args) -> None:
    """Refuse, before anything is loaded or trained, a dataset that has no offline proxies."""
    if args.dataset != "cifar10" and args.proxy_dir is None:
        raise SystemExit(
            f"[fewcall] {args.dataset} has no offline proxy source (TinyImageNet has no traffic signs): "
            "pass --proxy-dir DIR with one folder of generated images per class (named after the class or "
            "its index)"
        )


def _proxies(args, class_names, scale: Scale, pool: data.Dataset) -> data.Dataset:
    if args.proxy_dir is not None:
        return steal.folder_proxies(args.proxy_dir, class_names)
    return steal.pool_proxies(pool, class_names, per_class=scale.proxies_per_class, key=jax.random.key(3))


def _pool(args) -> data.Dataset:
    parts = [data.load("tinyimagenet", split, data_dir=args.data_dir) for split in ("train", "val")]
    images = np.concatenate([p.images for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    return data.Dataset(images, labels, parts[0].class_names, name="tinyimagenet")


def run(args) -> Path:
    scale = get_config(args.scale)
    _require_proxy_source(args)
    tag = args.scale if args.dataset == "cifar10" else f"{args.dataset}_{args.scale}"
    path = Path(args.results) / f"fewcall_{tag}.jsonl"
    done = finished(path, lambda r: (r["method"], r["calls_per_class"]))
    budgets = {"full-data": (0,), **dict.fromkeys(ABLATIONS, scale.ablation_calls)}
    cells = [(m, c) for m in args.methods for c in budgets.get(m, scale.calls)]
    todo = [cell for cell in cells if cell not in done]
    for m, c in [cell for cell in cells if cell in done]:
        print(f"[fewcall] {m} x {c} calls/class: done, skipped")
    if todo:
        net, variables, thresholds = _victim(args)
        test = data.load(args.dataset, "test", data_dir=args.data_dir)
        classes = test.num_classes
        if scale.test_images is not None:
            test = data.subset(test, jax.random.key(7), min(scale.test_images, len(test)))
        pool = _pool(args)
        proxies = _proxies(args, test.class_names, scale, pool)
        for method, calls in todo:
            config = steal.FewCallConfig(
                calls_per_class=max(calls, 2),
                rounds=2,
                arch=scale.arch,
                width=scale.width,
                epochs=scale.epochs,
                seed=args.seed,
                **ABLATIONS.get(method, {}),
            )  # full-data reads only the student's arch and width from it
            target = oracle.Oracle(net, variables, thresholds, budget=classes * calls)
            started = time.perf_counter()
            if method == "fewcall" or method in ABLATIONS:
                result = steal.few_call(target, proxies, config, progress=not args.quiet)
            elif method == "knockoff":
                result = steal.fewcall.knockoff_calls(
                    target, pool.images, classes * calls, config, progress=not args.quiet
                )
            else:
                result = _full_data(target, scale, config, args)
            record = dict(
                method=method, calls_per_class=calls, calls=target.used, proxies=len(proxies),
                proxies_per_class=len(proxies) // classes, dataset=args.dataset,
                student=f"{scale.arch} x{scale.width}",
                rounds=result.rounds, seconds=round(time.perf_counter() - started, 1),
                **steal.fewcall.evaluate_few_call(target, result, test.images, test.labels),
                test_images=len(test), scale=args.scale, **stamp(),
            )  # fmt: skip
            append_record(path, record)
            print(f"[fewcall] {method} x {calls}: accuracy {record['accuracy']:.3f}, "
                  f"fidelity {record['fidelity']:.3f}")  # fmt: skip
    records = read_records(path)
    path.with_suffix(".md").write_text(write_markdown(records, args.scale, args.dataset))
    plot(records, path.with_suffix(".png"))
    return path


def _full_data(target: oracle.Oracle, scale: Scale, config: steal.FewCallConfig, args):
    """The upper reference: the same student trained on victim-domain images with their true labels."""
    train = data.load(args.dataset, "train", data_dir=args.data_dir)
    if scale.full_data_images is not None:
        train = data.subset(train, jax.random.key(5), min(scale.full_data_images, len(train)))
    net = config.student(target.num_classes, target.input_shape)
    train = data.fit_dataset(train, target.input_shape)
    targets = np.eye(target.num_classes, dtype=np.float32)[train.labels]
    student = dataclasses.replace(config.student_config(), epochs=scale.full_data_epochs, batch_size=128)
    variables, _ = steal.student_training.train_student(
        net, np.asarray(train.images), targets, None, student, progress=not args.quiet
    )
    return steal.fewcall.FewCallResult(
        net=net, variables=variables, queried=np.zeros(0, np.int32), rounds=[], queries_used=0,
        budget_exhausted=False, config=config, method="full-data",
    )  # fmt: skip


def write_markdown(records: list[dict], scale: str, dataset: str = "cifar10") -> str:
    by = {(r["method"], r["calls_per_class"]): r for r in records}
    full = by.get(("full-data", 0))
    lines = [
        f"# Few-call stealing of a {NAMES.get(dataset, dataset)} VGG16 SDN victim ({scale} scale)",
        "",
        f"Written by `experiments/fewcall.py --scale {scale}` from `fewcall_{scale}.jsonl`. Machine: "
        f"{machines(records)}. Accuracy: the student on CIFAR-10 test images; fidelity: agreement "
        "with the victim's answers (early exit). Few-call: TinyImageNet proxies mapped to CIFAR-10 classes, "
        "active selection + self-paced pseudo-labels, 2 rounds; KnockoffNets: the same calls on random "
        f"TinyImageNet images. Paper ({PAPER}).",
        "",
        "| calls / class | calls | few-call acc. | KnockoffNets acc. | Δ (few-call − Knockoff) "
        "| few-call fid. | KnockoffNets fid. | pseudo-labels kept (last round) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for calls in sorted({c for m, c in by if m != "full-data"}):
        few, knock = by.get(("fewcall", calls)), by.get(("knockoff", calls))
        cell = lambda r, k: f"{100 * r[k]:.1f}" if r else ""
        delta = f"{100 * (few['accuracy'] - knock['accuracy']):+.1f}" if few and knock else ""
        kept = f"{few['rounds'][-1]['pseudo_kept']} / {few['rounds'][-1]['pseudo_proposed']}" if few else ""
        lines.append(
            f"| {calls} | {(few or knock)['calls']} | {cell(few, 'accuracy')} | {cell(knock, 'accuracy')} "
            f"| {delta} | {cell(few, 'fidelity')} | {cell(knock, 'fidelity')} | {kept} |"
        )
    ablations = sorted((r for r in records if r["method"] in ABLATIONS), key=lambda r: r["calls_per_class"])
    if ablations:
        lines += ["", "Ablations: the few-call attack with one part switched off.", ""]
        lines += [
            "| calls / class | variant | accuracy | fidelity | few-call accuracy |",
            "|---|---|---|---|---|",
        ]
        for r in ablations:
            few = by.get(("fewcall", r["calls_per_class"]))
            both = f"{100 * few['accuracy']:.1f}" if few else ""
            lines.append(f"| {r['calls_per_class']} | {r['method']} | {100 * r['accuracy']:.1f} "
                         f"| {100 * r['fidelity']:.1f} | {both} |")  # fmt: skip
    if full:
        lines += [
            "",
            f"Full-data student (true labels, {full['student']}): accuracy {100 * full['accuracy']:.1f} %, "
            f"fidelity {100 * full['fidelity']:.1f} %. "
            f"Victim accuracy: {100 * full['victim_accuracy']:.1f} %.",
        ]
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    """Accuracy against calls per class, one line per method (the full-data student as a level)."""
    from matplotlib.figure import Figure  # no pyplot: a saved file must not change a notebook's backend

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method, style in (("fewcall", "o-"), ("knockoff", "s--")):
        points = sorted((r["calls_per_class"], r["accuracy"]) for r in records if r["method"] == method)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=method)
    for r in records:
        if r["method"] == "full-data":
            ax.axhline(r["accuracy"], color="gray", ls=":", label="full-data student")
            ax.axhline(r["victim_accuracy"], color="black", ls="-.", lw=0.8, label="victim")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calls per class")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=sorted(NAMES), default="cifar10", help="the victim's data")
    parser.add_argument(
        "--proxy-dir",
        default=None,
        help="proxies <class>/<image> (default for CIFAR-10: TinyImageNet mapped)",
    )
    path = run(parser.parse_args(argv))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
