"""The efficiency-robustness SoK's table: DeepSloth against SDN victims on CIFAR-10, and defenses.

    .venv/bin/python experiments/slowdown.py --scale cpu            # ResNet56 and VGG16 SDN victims
    .venv/bin/python experiments/slowdown.py --scale paper          # full victims, full test set (GPU)

For each victim: clean accuracy (under its thresholds, real early exit) and efficacy; under DeepSloth
L∞ (ε = 8/255, 30 steps), L2 and universal (white box); the L∞-attacked images after each input defense
(JPEG 90 and 75, non-local-means smoothing), and the defenses' cost on clean images; the RBF-SVM
detector on the victim's per-exit outputs (trained on one half of the test images, scored on the other).
Each finished row is appended to experiments/results/slowdown_sok_<scale>.jsonl (rerunning skips it;
adversarial images are cached under outputs/) and the Markdown beside it is rewritten with the SoK's
ResNet56 numbers in the next columns.
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

from experiments._common import cached_array, finished, machines, pick_scale, publish_markdown, stamp
from experiments.cli import runner_parser
from mexjax import data, defenses, train, victim_training
from mexjax.attacks import slowdown
from mexjax.results import append_record, read_records

ARCHS = ("resnet56", "vgg16")


@dataclasses.dataclass(frozen=True)
class Scale:
    victim_images: int | None
    victim_epochs: int
    victim_lr: float | None
    width: float
    num_exits: int
    test_images: int | None
    linf_steps: int
    l2_eps: float
    l2_steps: int
    universal_images: int
    universal_epochs: int


SCALES = {
    "tiny": Scale(
        victim_images=512, victim_epochs=1, victim_lr=0.03, width=0.125, num_exits=3, test_images=64,
        linf_steps=3, l2_eps=1.0, l2_steps=3, universal_images=64, universal_epochs=1,
    ),
    "cpu": Scale(
        victim_images=20000, victim_epochs=6, victim_lr=0.03, width=0.25, num_exits=6, test_images=1000,
        linf_steps=30, l2_eps=1.0, l2_steps=50, universal_images=2000, universal_epochs=5,
    ),
    "paper": Scale(
        victim_images=None, victim_epochs=100, victim_lr=None, width=1.0, num_exits=7, test_images=None,
        linf_steps=30, l2_eps=1.0, l2_steps=550, universal_images=10000, universal_epochs=20,
    ),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


# The SoK's ResNet56 SDN on CIFAR-10 (accuracy %, efficacy); detection accuracy %, AUC; adaptive: detected %.
PAPER = {
    "clean": (77.99, 0.54),
    "linf": (19.85, 0.01),
    "linf+jpeg90": (52.19, 0.08),
    "linf+smooth": (57.13, 0.33),
    "detection": (84.2, 0.92),
    "adaptive": (5.3, ""),
}
ROWS = ("clean", "linf", "l2", "universal", "linf+jpeg90", "linf+jpeg75", "linf+smooth", "clean+jpeg90",
        "clean+jpeg75", "clean+smooth", "detection", "adaptive")  # fmt: skip


def victim_config(arch: str, scale: Scale, data_dir=None, seed: int = 0) -> victim_training.VictimConfig:
    return victim_training.VictimConfig(
        arch=arch,
        dataset="cifar10",
        num_exits=scale.num_exits,
        width=scale.width,
        epochs=scale.victim_epochs,
        batch_size=128 if (scale.victim_images or 10**9) >= 1280 else 32,
        learning_rate=scale.victim_lr,
        milestones=(0.75,) if scale.victim_lr is not None else None,
        held_out=5000 if scale.victim_images is None else max(64, scale.victim_images // 10),
        train_subset=scale.victim_images,
        data_dir=data_dir,
        seed=seed,
    )


def run_victim(arch: str, args, path: Path) -> None:
    scale = get_config(args.scale)
    done = finished(path, lambda r: r["row"], lambda r: r["victim"] == arch and r.get("seed", 0) == args.seed)
    if all(row in done for row in ROWS):
        print(f"[slowdown] {arch}: all rows done, skipped")
        return
    outputs = Path(args.outputs)
    # its own folder: experiments/steal.py trains other CIFAR-10 victims of the same name
    seeded = f"_seed{args.seed}" if args.seed else ""
    out = outputs / "victims" / args.scale / f"sok_cifar10_{arch}_k{scale.num_exits}{seeded}"
    net, variables, thresholds, record = victim_training.load_or_train(
        victim_config(arch, scale, args.data_dir, args.seed), out, progress=not args.quiet
    )
    test = data.load("cifar10", "test", data_dir=args.data_dir)
    if scale.test_images is not None and scale.test_images < len(test):
        test = data.subset(test, jax.random.key(7), scale.test_images)
    train_pool = data.load("cifar10", "train", data_dir=args.data_dir)
    train_pool = data.subset(train_pool, jax.random.key(8), min(scale.universal_images, len(train_pool)))
    x = test.images.astype(np.float32) / 255.0
    cache = outputs / "slowdown" / args.scale / f"{arch}{seeded}"
    progress = not args.quiet
    adv = {
        "linf": lambda: cached_array(cache / "linf.npy", lambda: slowdown.attack(
            net, variables, x, slowdown.SlothConfig(steps=scale.linf_steps), progress=progress)),
        "l2": lambda: cached_array(cache / "l2.npy", lambda: slowdown.attack(
            net, variables, x, slowdown.SlothConfig(norm="l2", eps=scale.l2_eps, step=scale.l2_eps / 10,
                                                    steps=scale.l2_steps), progress=progress)),
        "universal": lambda: slowdown.apply_universal(x, cached_array(cache / "universal_delta.npy", lambda: (
            slowdown.universal(net, variables, train_pool.images, epochs=scale.universal_epochs,
                               progress=progress)))),
    }  # fmt: skip
    transforms = {
        "jpeg90": lambda im: defenses.jpeg(im, 90),
        "jpeg75": lambda im: defenses.jpeg(im, 75),
        "smooth": defenses.smooth,
    }
    for row in ROWS:
        if row in done:
            print(f"[slowdown] {arch}/{row}: done, skipped")
            continue
        started = time.perf_counter()
        if row == "detection":
            result = _detection(net, variables, x, adv["linf"]())
        elif row == "adaptive":
            result = _adaptive(net, variables, thresholds, x, adv["linf"](), test.labels, scale)
        else:
            source, _, defense = row.partition("+")
            images = x if source == "clean" else adv[source]()
            if defense:
                images = transforms[defense](images)
            result = slowdown.outcome(net, variables, thresholds, images, test.labels)
        result.update(
            victim=arch, row=row, scale=args.scale, seed=args.seed, test_images=len(test),
            thresholds=record["thresholds"],
            victim_accuracy_per_exit=record["test"]["accuracy_per_exit"],
            seconds=round(time.perf_counter() - started, 1), **stamp(),
        )  # fmt: skip
        append_record(path, result)
        shown = {k: round(result[k], 4) for k in ("accuracy", "efficacy", "auc") if k in result}
        print(f"[slowdown] {arch}/{row}: {shown}")


def _detection(net, variables, clean, attacked) -> dict:
    """SVM on per-exit outputs; fit on the first half of the test images, report on the second."""
    half = len(clean) // 2
    features = [defenses.exit_features(train.predict(net, variables, im)) for im in (clean, attacked)]
    detector = defenses.fit_detector(features[0][:half], features[1][:half])
    report = defenses.detection_report(detector, features[0][half:], features[1][half:])
    report["detector_train_rows"] = 2 * half
    return report


def _adaptive(net, variables, thresholds, clean, attacked, labels, scale) -> dict:
    """The attacker knows the detector fitted as in `_detection` and attacks the other half so that
    the SVM reads its images as clean; reports what the detector still catches and what it costs."""
    half = len(clean) // 2
    features = [defenses.exit_features(train.predict(net, variables, im[:half])) for im in (clean, attacked)]
    detector = defenses.fit_detector(*features)
    config = slowdown.SlothConfig(steps=scale.linf_steps)
    adaptive = slowdown.adaptive_attack(net, variables, clean[half:], detector, config, weight=10.0)
    held = [defenses.exit_features(train.predict(net, variables, im)) for im in (clean[half:], adaptive)]
    report = {f"detector_{k}": v for k, v in defenses.detection_report(detector, *held).items()}
    report.update(slowdown.outcome(net, variables, thresholds, adaptive, labels[half:]))  # the victim's side
    return report


def write_markdown(records: list[dict], scale: str) -> str:
    lines = [
        f"# DeepSloth and defenses on CIFAR-10 SDN victims ({scale} scale)",
        "",
        f"Written by `experiments/slowdown.py --scale {scale}` from `slowdown_sok_{scale}.jsonl`. Machine: "
        f"{machines(records)}. Accuracy: early-exit accuracy under the victim's thresholds; "
        "efficacy: area under the exited-share vs normalized-cost curve (1 = all leave at a free first "
        "exit, 0 = all run the whole net). Attacks are white box; `linf+jpeg90` = the L∞-attacked images "
        "re-compressed before the victim sees them; `clean+...` = a defense's cost on clean images. "
        "Detection: accuracy and AUC of the RBF SVM on clean vs L∞-attacked images. Paper: the SoK's "
        "ResNet56 (its VGG16 numbers are not restated).",
        "",
        "| victim | row | accuracy | efficacy | FLOPs vs full | exits (test) | paper accuracy "
        "| paper efficacy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {row: i for i, row in enumerate(ROWS)}
    for r in sorted(records, key=lambda r: (r["victim"], r.get("seed", 0), order.get(r["row"], 99))):
        paper = PAPER.get(r["row"], ("", "")) if r["victim"] == "resnet56" else ("", "")
        r = {**r, "victim": r["victim"] + (f" (seed {r['seed']})" if r.get("seed") else "")}
        if r["row"] == "adaptive":
            lines.append(
                f"| {r['victim']} | adaptive (detected % / efficacy) "
                f"| {100 * r['detector_detected_attacks']:.1f} "
                f"| {r['efficacy']:.3f} | {r['flops_ratio']:.1%} | {r['exit_histogram']} | {paper[0]} | |"
            )
            continue
        if r["row"] == "detection":
            lines.append(
                f"| {r['victim']} | detection (acc / AUC) | {100 * r['accuracy']:.1f} | {r['auc']:.3f} "
                f"| | | {paper[0]} | {paper[1]} (AUC) |"
            )
            continue
        lines.append(
            f"| {r['victim']} | {r['row']} | {100 * r['accuracy']:.1f} | {r['efficacy']:.3f} "
            f"| {r['flops_ratio']:.1%} | {r['exit_histogram']} | {paper[0]} | {paper[1]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument(
        "--seed", type=int, default=0, help="the victim's training seed (each seed: its own victim and rows)"
    )
    args = parser.parse_args(argv)
    path = Path(args.results) / f"slowdown_sok_{args.scale}.jsonl"
    for arch in args.archs:
        run_victim(arch, args, path)
    publish_markdown(path, write_markdown(read_records(path), args.scale))


if __name__ == "__main__":
    main()
