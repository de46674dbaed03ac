"""Train the multi-exit victims the later experiments attack, and tabulate them.

    .venv/bin/python experiments/victims.py fashion_mnist_vgg16_w0.25 [more names] [--table-only]

Each named config trains with `mexjax.victim_training.train_victim` into outputs/victims/<name> (resumable:
rerunning continues an interrupted run), then copies its result to experiments/results/victims/<name>.json
and rewrites experiments/results/victims.md from every result there, beside the target it must meet.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mexjax.victim_training import VictimConfig, train_victim

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "victims"

CONFIGS = {
    # CPU-sized victim of the issue on multi-exit networks: >= 88 % at the final exit in a few epochs.
    "fashion_mnist_vgg16_w0.25": (
        VictimConfig(arch="vgg16", dataset="fashion_mnist", num_exits=6, width=0.25, epochs=8),
        "final exit >= 88 % (CPU-sized target)",
        0.88,
    ),
}


def run(name: str) -> dict:
    config, _, _ = CONFIGS[name]
    out = ROOT / "outputs" / "victims" / name
    result = train_victim(config, out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    shutil.copy(out / "exits.png", RESULTS / f"{name}.png")
    return result


def table() -> str:
    lines = [
        "# Multi-exit victims",
        "",
        "Written by `experiments/victims.py`; each row from `victims/<name>.json`. Test accuracy per exit, "
        "accuracy and mean FLOPs under the thresholds chosen on held-out training images.",
        "",
        "| victim | test acc per exit | thresholds | early-exit acc | FLOPs vs full | exits (test) | minutes "
        "| machine | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for file in sorted(RESULTS.glob("*.json")):
        r = json.loads(file.read_text())
        name = file.stem
        target_text, target = CONFIGS[name][1:] if name in CONFIGS else ("", None)
        t = r["test"]
        met = "" if target is None else ("yes" if t["accuracy_per_exit"][-1] >= target else "no")
        lines.append(
            f"| {name} | {' / '.join(f'{a:.3f}' for a in t['accuracy_per_exit'])} "
            f"| {r['thresholds'][0]:.2f} ({r['thresholds_how'].split(' on ')[0]}) "
            f"| {t['accuracy_early_exit']:.4f} | {t['flops_ratio']:.1%} "
            f"| {t['exit_histogram']} | {r['minutes']} | {r['machine']} | {target_text} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help=f"configs to train (default: all): {', '.join(CONFIGS)}")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown victim configs {unknown}; known: {', '.join(CONFIGS)}")
    if not args.table_only:
        for name in args.names or list(CONFIGS):
            run(name)
    (RESULTS.parent / "victims.md").write_text(table())
    print(table())


if __name__ == "__main__":
    main()
