"""Adaptive re-timing vs uniform fastest-of-R at an equal number of queries, measured live.

    .venv/bin/python experiments/retiming.py --victim outputs/corpus/vgg16_fmnist_w025_k6 \
        [--n 2000 --passes 3 --repeats 2 --load one]

The victim answers `--n` TinyImageNet queries through `oracle.Oracle` (real batch-1 early exit, wall
clock) while `--load` keeps one core (or both) busy with spinning processes. Each repeat runs both
attackers back to back, in alternating order: uniform (every query timed `--passes` times, the
fastest kept, every pass given to the estimator) and adaptive (`steal.retime.adaptive_timing`: one pass
each, then the same number of extra queries spent on the queries whose exit is in doubt). Both spend
n x passes queries. Writes experiments/results/retiming_cpu.{jsonl,md}: exits found, balanced and
aligned balanced exit accuracy, and the best time-threshold rule's bound on each attacker's times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import ROOT
from experiments.timing_corpus import LOADS, _query_images, _spinners, present_rank
from mexjax import exits, metrics, nets, oracle, results
from mexjax.attacks import steal
from mexjax.results import read_records

RESULTS = ROOT / "experiments" / "results"


def _score(runtimes, true) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est, k = exits.estimate_exits(runtimes)
    fastest = np.asarray(runtimes).min(axis=0) if np.ndim(runtimes) == 2 else np.asarray(runtimes)
    p = metrics.exit_prediction(est, true)
    bound = metrics.best_boundary_accuracy(fastest, true)
    return {
        "found": int(k),
        "present": int(true.max()) + 1,
        "balanced": round(p["balanced_accuracy"], 4),
        "aligned_balanced": round(p["aligned_balanced_accuracy"], 4),
        "best_rule_balanced": round(bound["balanced_accuracy"], 4),
    }


def run(args) -> list[dict]:
    victim_dir = Path(args.victim)
    net, variables, thresholds, _ = nets.load(victim_dir / "model")
    if args.threshold is not None:  # one global threshold in place of the trained ones (SDN's rule)
        thresholds = np.full_like(np.asarray(thresholds), args.threshold)
    images, _, record = _query_images("tinyimagenet", net, victim_dir, args.data_dir, args.n, args.seed)
    budget = len(images) * args.passes
    probe = oracle.Oracle(net, variables, thresholds, budget=0)
    true = present_rank(oracle.true_exits(probe, images))
    rows = []
    spinners = _spinners(LOADS[args.load])
    try:
        time.sleep(2.0 if spinners else 0.0)
        for r in range(args.repeats):
            order = ("uniform", "adaptive") if r % 2 == 0 else ("adaptive", "uniform")
            for how in order:
                o = oracle.Oracle(net, variables, thresholds, budget=budget)
                load = os.getloadavg()[0]
                started = time.perf_counter()
                if how == "uniform":
                    answers = o.query(images, passes=args.passes)
                    score = _score(answers.pass_runtimes, true)
                else:
                    answers = steal.retime.adaptive_timing(o, images, total_passes=args.passes)
                    score = _score(answers.runtimes, true)
                    score["rounds"] = answers.rounds
                    score["max_passes_per_query"] = int(answers.passes.max())
                row = {
                    "attacker": how,
                    "repeat": r,
                    **score,
                    "queries_used": o.used,
                    "seconds": round(time.perf_counter() - started, 1),
                    "load": args.load,
                    "load_before": round(load, 2),
                    "victim": str(victim_dir),
                    "threshold_override": args.threshold,
                    "victim_config": record["config"],
                    "n": len(images),
                    "passes": args.passes,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": results.machine_description(),
                }
                rows.append(row)
                print(f"[retiming] {how}: {json.dumps(score)}, {o.used} queries, load {load:.1f}")
    finally:
        for p in spinners:
            p.kill()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "retiming_cpu.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    _markdown()
    return rows


def _threshold(row: dict) -> str:
    t = row.get("threshold_override")
    return "" if t is None else f" (threshold {t:g})"


def _markdown() -> None:
    rows = read_records(RESULTS / "retiming_cpu.jsonl")
    lines = [
        "# Adaptive re-timing vs uniform fastest-of-R (live, equal queries)",
        "",
        f"Written by `experiments/retiming.py` on {time.strftime('%Y-%m-%d')}. Each row: one attacker timing "
        "the same TinyImageNet queries on the victim named, with the other attacker's run right before "
        "or after it; both spend queries x passes. Exits found / present, balanced and aligned balanced "
        "exit accuracy of `exits.estimate_exits`, and the best time thresholds knowing the truth on that "
        "attacker's times (its bound).",
        "",
        "| date | victim | load (avg) | attacker | queries used | exits | balanced | aligned balanced "
        "| best rule | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['date']} | {Path(r['victim']).name}{_threshold(r)} | {r['load']} ({r['load_before']:.1f}) "
            f"| {r['attacker']} "
            f"| {r['queries_used']} | {r['found']}/{r['present']} | {r['balanced']:.3f} "
            f"| {r['aligned_balanced']:.3f} | {r['best_rule_balanced']:.3f} | {r['seconds']} |"
        )
    (RESULTS / "retiming_cpu.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--victim", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", default="one", choices=tuple(LOADS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=None, help="one global confidence threshold")
    parser.add_argument("--data-dir", default=None)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
