"""The DivQAT comparison: extraction defenses x extraction attacks on a CIFAR-10 q75 SDN victim.

    .venv/bin/python experiments/extraction.py --scale cpu      # this machine (reduced budgets)
    .venv/bin/python experiments/extraction.py --scale paper    # full victim and budgets (GPU)

Defenses: none, PTQ (int8, calibrated), QAT, DivQAT (alpha), reverse sigmoid (RS), DCP, DivQAT+DCP.
Attacks: KnockoffNets (TinyImageNet images, soft labels), DFME, MAZE - each under the same query budget.
The victim is the SoK runner's ResNet56 SDN of the same scale (`experiments/slowdown.py`; trained here
if missing). Each finished (defense, attack) cell appends one record (`steal.extract`: victim accuracy
as deployed, stolen accuracy, fidelity, queries, wall time) to
experiments/results/extraction_<scale>.jsonl; rerunning skips finished cells; the Markdown beside it is
rewritten with each cell's difference to plain QAT, the paper's comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import slowdown as sok
from experiments._common import finished, machines, pick_scale, stamp
from experiments.cli import runner_parser
from mexjax import data, defenses, nets, oracle, train, victim_training
from mexjax.attacks import steal
from mexjax.results import append_record, read_records

DEFENSES = ("none", "ptq", "qat", "divqat", "rs", "dcp", "divqat+dcp")
ATTACKS = ("knockoff", "dfme", "maze")


@dataclasses.dataclass(frozen=True)
class Scale:
    tune_images: int | None  # training images for calibration and (Div)QAT fine-tuning
    tune_epochs: int
    alpha: float  # DivQAT's alpha
    test_images: int | None
    knockoff_budget: int
    data_free_budget: int
    data_free_batch: int | None  # None: the papers' batch sizes
    student_width: float
    student_epochs: int


SCALES = {
    "tiny": Scale(
        tune_images=128, tune_epochs=1, alpha=0.5, test_images=64, knockoff_budget=128,
        data_free_budget=2 * 8 * 7, data_free_batch=8, student_width=0.125, student_epochs=1,
    ),
    "cpu": Scale(
        tune_images=5_000, tune_epochs=2, alpha=0.5, test_images=1000, knockoff_budget=5_000,
        data_free_budget=20_000, data_free_batch=None, student_width=0.25, student_epochs=10,
    ),
    "paper": Scale(
        tune_images=None, tune_epochs=10, alpha=0.5, test_images=None, knockoff_budget=50_000,
        data_free_budget=20_000_000, data_free_batch=None, student_width=1.0, student_epochs=30,
    ),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


PAPER = "DivQAT: victim accuracy within 1 point of QAT; stolen accuracy and fidelity below QAT's"


def defended_victims(scale_name: str, names, args) -> dict:
    """name -> oracle.DeployedModel, fine-tuned defenses cached under outputs/extraction/<scale>/."""
    scale, sok_scale = get_config(scale_name), sok.get_config(scale_name)
    outputs = Path(args.outputs)
    folder = outputs / "victims" / scale_name / f"sok_cifar10_resnet56_k{sok_scale.num_exits}"
    net, variables, thresholds, _ = victim_training.load_or_train(
        sok.victim_config("resnet56", sok_scale, args.data_dir), folder, progress=not args.quiet
    )
    tune = data.load("cifar10", "train", data_dir=args.data_dir)
    if scale.tune_images is not None:
        tune = data.subset(tune, jax.random.key(21), min(scale.tune_images, len(tune)))
    tune = data.fit_dataset(tune, net.input_shape)
    config = train.TrainConfig(epochs=scale.tune_epochs, batch_size=min(128, len(tune)), learning_rate=0.01)
    made: dict[str, tuple] = {}

    def quantized(kind: str):
        if kind not in made:
            saved = outputs / "extraction" / scale_name / kind.replace(":", "_")
            if (saved / "done").exists():
                qnet, qvars, _, _ = nets.load(saved / "model")
            elif kind == "ptq":
                qnet = nets.quantize(net)
                qvars = nets.calibrate(qnet, variables, tune.images[:512])
            else:
                alpha = (
                    0.0 if kind == "qat" else scale.alpha if kind == "divqat" else float(kind.split(":")[1])
                )
                qnet, qvars, _ = defenses.divqat(
                    net, variables, tune, config, alpha=alpha, progress=not args.quiet,
                    workdir=saved / "run",
                )  # fmt: skip
            if not (saved / "done").exists():
                nets.save(saved / "model", qnet, qvars, thresholds=thresholds)
                (saved / "done").write_text("")
            made[kind] = (qnet, qvars)
        return made[kind]

    victims = {}
    for name in names:
        model, _, output = name.partition("+")
        if model in ("none", "rs", "dcp"):
            output, model = (model, "none") if model != "none" else ("", "none")
        qnet, qvars = (net, variables) if model == "none" else quantized(model)
        defense = {"": None, "rs": defenses.reverse_sigmoid(), "dcp": defenses.dcp()}[output]
        victims[name] = oracle.DeployedModel(qnet, qvars, thresholds, defense, name=name)
    return victims


def run(args) -> Path:
    scale = get_config(args.scale)
    path = Path(args.results) / f"extraction_{args.scale}.jsonl"
    done = finished(path, lambda r: (r["defense"], r["attack"]))
    cells = [(d, a) for d in args.defenses for a in args.attacks if (d, a) not in done]
    for d, a in [(d, a) for d in args.defenses for a in args.attacks if (d, a) in done]:
        print(f"[extraction] {d} x {a}: done, skipped")
    if cells:
        victims = defended_victims(args.scale, sorted({d for d, _ in cells}), args)
        test = data.load("cifar10", "test", data_dir=args.data_dir)
        if scale.test_images is not None:
            test = data.subset(test, jax.random.key(7), min(scale.test_images, len(test)))
        pool = None
        if any(a == "knockoff" for _, a in cells):
            pool = data.load("tinyimagenet", "train", data_dir=args.data_dir)
            pool = data.subset(pool, jax.random.key(11), min(scale.knockoff_budget, len(pool)))
            pool = np.asarray(data.to_input_shape(pool.images, victims[cells[0][0]].net.input_shape))
        for d, a in cells:
            budget = scale.knockoff_budget if a == "knockoff" else scale.data_free_budget
            base = steal.DataFreeConfig() if a == "dfme" else steal.datafree.maze_config()
            if scale.data_free_batch is not None:
                base = dataclasses.replace(base, batch_size=scale.data_free_batch)
            record = steal.extract(
                victims[d], a, budget=budget, test_images=test.images, test_labels=test.labels,
                pool=pool, student_arch="resnet56", student_width=scale.student_width,
                steal_config=steal.StealConfig(arch="resnet56", width=scale.student_width, num_exits=2,
                                               use_timing=False, epochs=scale.student_epochs),
                data_free_config=base, progress=not args.quiet,
            )  # fmt: skip
            record.update(scale=args.scale, **stamp())
            append_record(path, record)
            print(f"[extraction] {d} x {a}: victim {record['victim_accuracy']:.3f}, stolen "
                  f"{record['stolen_accuracy']:.3f}, fidelity {record['fidelity']:.3f}")  # fmt: skip
    path.with_suffix(".md").write_text(write_markdown(read_records(path), args.scale))
    return path


def defense_name(name: str) -> str:
    """A defense of DEFENSES, or `divqat:ALPHA` (optionally +rs / +dcp): the alpha sweep."""
    model, _, output = name.partition("+")
    if name in DEFENSES:
        return name
    if model.startswith("divqat:") and output in ("", "rs", "dcp"):
        try:
            if float(model.split(":", 1)[1]) >= 0:
                return name
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(
        f"unknown defense {name!r}: choose from {', '.join(DEFENSES)} or divqat:ALPHA (ALPHA >= 0)"
    )


def write_markdown(records: list[dict], scale: str) -> str:
    lines = [
        f"# Extraction defenses x attacks on the CIFAR-10 q75 ResNet56 SDN victim ({scale} scale)",
        "",
        f"Written by `experiments/extraction.py --scale {scale}` from `extraction_{scale}.jsonl`. Machine: "
        f"{machines(records)}. Victim accuracy: as deployed (early exit, output defense applied); "
        "stolen accuracy: the student's last exit on the test images; fidelity: agreement with the deployed "
        "victim. Δ: difference to the plain-QAT victim under the same attack (the paper's comparison). "
        f"Paper (seed 003): {PAPER}.",
        "",
        "| defense | attack | victim acc. | stolen acc. | fidelity | Δ victim vs QAT | Δ stolen vs QAT "
        "| Δ fidelity vs QAT | queries | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    qat = {r["attack"]: r for r in records if r["defense"] == "qat"}
    order = {d: i for i, d in enumerate(DEFENSES)}
    for r in sorted(records, key=lambda r: (ATTACKS.index(r["attack"]), order.get(r["defense"], 99))):
        ref = qat.get(r["attack"])
        delta = [f"{100 * (r[k] - ref[k]):+.1f}" if ref else "" for k in
                 ("victim_accuracy", "stolen_accuracy", "fidelity")]  # fmt: skip
        lines.append(
            f"| {r['defense']} | {r['attack']} | {100 * r['victim_accuracy']:.1f} | "
            f"{100 * r['stolen_accuracy']:.1f} | {100 * r['fidelity']:.1f} | {' | '.join(delta)} "
            f"| {r['queries']} | {r['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument(
        "--defenses", nargs="+", default=list(DEFENSES), type=defense_name,
        help=f"any of {', '.join(DEFENSES)}, or divqat:ALPHA[+dcp|+rs] for another DivQAT alpha",
    )  # fmt: skip
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    path = run(parser.parse_args(argv))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
