"""Read the kept measured runtimes again with the density-rule exit estimator (no new timing).

    .venv/bin/python experiments/reanalyse_timing.py      # a few seconds

The stealing runners keep each timing run's runtimes and true exits in experiments/results/timing/
(`runtimes`, `true_exits`). This script reads every kept run with the density-rule estimator
(`exits.estimate_exits_density`; `experiments/timing_corpus.py` scores today's `exits.estimate_exits`
on the same runs, imported into the timing corpus), with its density rules alone (`overlap=None`,
the estimator of the earlier runs) and with the textbook
rule (local minima of one Scott-bandwidth KDE), next to the best any time thresholds could do knowing
the true exits, and writes experiments/results/timing_reanalysis.md.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import ROOT
from mexjax import exits, metrics


def textbook(runtimes: np.ndarray) -> np.ndarray:
    """Local minima of one Gaussian KDE (Scott), evaluated at the sorted runtimes."""
    x = np.sort(runtimes)
    f = stats.gaussian_kde(x)(x)
    cuts = [x[i] for i in range(1, len(x) - 1) if f[i] < f[i - 1] and f[i] <= f[i + 1]]
    return np.searchsorted(np.asarray(cuts), runtimes, side="right")


def analyse(runtimes: np.ndarray, true: np.ndarray) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single humps are reported in the counts
        rows = {
            "estimator": exits.estimate_exits_density(runtimes),
            "density rules only": exits.estimate_exits_density(runtimes, overlap=None),
        }
    rows["textbook"] = (book := textbook(runtimes)), int(book.max()) + 1
    out = {}
    for name, (estimated, found) in rows.items():
        p = metrics.exit_prediction(estimated, true)
        out[name] = {"found": int(found), **{k: float(p[k]) for k in (
            "accuracy", "balanced_accuracy", "aligned_accuracy", "aligned_balanced_accuracy")}}  # fmt: skip
    out["best rule"] = metrics.best_boundary_accuracy(runtimes, true)
    return out


def write_markdown(results: dict[str, dict], true_exits: dict[str, list[int]]) -> str:
    lines = [
        "# Kept measured runtimes, read again (exit estimation)",
        "",
        f"Written by `experiments/reanalyse_timing.py` on {time.strftime('%Y-%m-%d')} from "
        "`experiments/results/timing/*.npz` (no new timing). Each cell: exits found, then accuracy / "
        "balanced accuracy against the true exits, then the same aligned (the humps found mapped to the "
        "true exits in order). Estimator = `exits.estimate_exits_density`; density rules only = the same "
        "without its overlap step (`overlap=None`, the estimator of the runs that kept these runtimes); "
        "textbook = local minima of one Scott-bandwidth KDE; best rule = the best time thresholds chosen "
        "knowing the true exits (accuracy / balanced).",
        "",
        "| run | true exits of the queries | estimator | density rules only | textbook | best rule |",
        "|---|---|---|---|---|---|",
    ]
    for run, r in results.items():
        cells = [
            f"{c['found']}: {c['accuracy']:.3f} / {c['balanced_accuracy']:.3f}; aligned "
            f"{c['aligned_accuracy']:.3f} / {c['aligned_balanced_accuracy']:.3f}"
            for c in (r["estimator"], r["density rules only"], r["textbook"])
        ]
        best = r["best rule"]
        lines.append(
            f"| {run} | {true_exits[run]} | {' | '.join(cells)} "
            f"| {best['accuracy']:.3f} / {best['balanced_accuracy']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    folder = ROOT / "experiments" / "results" / "timing"
    results, histograms = {}, {}
    for path in sorted(folder.glob("*.npz")):
        kept = np.load(path)
        true = kept["true_exits"]
        results[path.stem] = analyse(kept["runtimes"], true)
        histograms[path.stem] = np.bincount(true).tolist()
    if not results:
        raise SystemExit(f"no kept runtimes in {folder}: the stealing runners write them there")
    out = ROOT / "experiments" / "results" / "timing_reanalysis.md"
    out.write_text(write_markdown(results, histograms))
    print(out.read_text())


if __name__ == "__main__":
    main()
