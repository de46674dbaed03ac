"""How many timing passes the demo needs: exits read from the demo victim's runtimes, by passes.

    .venv/bin/python experiments/demo_passes.py [--victim assets/victims/vgg16_cifar10_w025_k4]
        [--n 2000 --passes 2 3 4 5 --load one --repeats 1]

The victim answers `--n` TinyImageNet train images through `oracle.Oracle` (real batch-1 early exit,
wall clock), each timed `passes` times (fresh random order per pass), while `--load` keeps cores
busy with spinning processes; the exits are read by `exits.estimate_exits` from every pass. Writes
`experiments/results/demo/passes.{jsonl,md}`: exits found, balanced and aligned balanced exit
accuracy, and the best time-threshold rule on the fastest times (knowing the true exits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import ROOT
from experiments.timing_corpus import LOADS, _spinners
from mexjax import data, exits, metrics, nets, oracle

RESULTS = ROOT / "experiments" / "results" / "demo"


def measure(net, variables, thresholds, images, passes: int, load: str) -> dict:
    victim = oracle.Oracle(net, variables, thresholds, budget=len(images) * passes)
    spinners = _spinners(LOADS[load])
    try:
        time.sleep(1 if spinners else 0)
        start = time.perf_counter()
        answers = victim.query(images, passes=passes)
        seconds = time.perf_counter() - start
    finally:
        for p in spinners:
            p.kill()
    timed = answers.pass_runtimes if passes > 1 else answers.runtimes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est, k = exits.estimate_exits(timed, order=answers.pass_order if passes > 1 else None)
    true = oracle.true_exits(victim, images)
    p = metrics.exit_prediction(est, true)
    best = metrics.best_boundary_accuracy(answers.runtimes, true)
    return {
        "passes": passes,
        "load": load,
        "queries": len(images),
        "seconds": round(seconds, 1),
        "exits_found": int(k),
        "victim_exits": net.num_exits,
        "true_exit_histogram": np.bincount(true, minlength=net.num_exits).tolist(),
        "balanced": round(float(p["balanced_accuracy"]), 4),
        "aligned_balanced": round(float(p["aligned_balanced_accuracy"]), 4),
        "best_rule_balanced": round(float(best["balanced_accuracy"]), 4),
        "median_ms_per_exit": [
            round(float(np.median(answers.runtimes[true == e])) * 1e3, 3)
            for e in range(net.num_exits)
            if (true == e).any()
        ],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--victim", default=str(ROOT / "assets" / "victims" / "vgg16_cifar10_w025_k4"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--passes", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--load", choices=sorted(LOADS), default="one")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    net, variables, thresholds, _ = nets.load(Path(args.victim) / "model")
    pool = data.load("tinyimagenet", "train", data_dir=args.data_dir)
    picked = np.random.default_rng(0).permutation(len(pool))[: args.n]
    images = np.asarray(data.to_input_shape(pool.images[picked], net.input_shape))
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(RESULTS / "passes.jsonl", "a") as f:
        for r in range(args.repeats):
            for passes in args.passes:
                row = measure(net, variables, thresholds, images, passes, args.load)
                row.update(repeat=r, victim=Path(args.victim).name, date=time.strftime("%Y-%m-%d %H:%M"))
                f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(row, flush=True)
    lines = [
        f"# Timing passes for the demo victim ({rows[0]['victim']}), load `{args.load}`",
        "",
        f"Written by `experiments/demo_passes.py --n {args.n} --load {args.load}` (this run's rows; every "
        "run's rows are in passes.jsonl).",
        "",
        "| passes | exits found (victim) | balanced | aligned balanced | best rule (fastest, knowing "
        "truth) | true exits | median ms per exit | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['passes']} | {row['exits_found']} ({row['victim_exits']}) | {row['balanced']} | "
            f"{row['aligned_balanced']} | {row['best_rule_balanced']} | {row['true_exit_histogram']} | "
            f"{row['median_ms_per_exit']} | {row['seconds']} |"
        )
    (RESULTS / "passes.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
