"""The README's main command run again and again under load: how often each of its claims holds.

    .venv/bin/python experiments/demo_runs.py [--runs 10 --load one] [-- extra demo flags]

Each run is `bash scripts/demo.sh --out outputs/demo_runs/<stamp>/run_<i> --seed <i>` while `--load`
keeps cores busy with spinning processes (as a newcomer's machine with another job running). The
summary of every run (with the load average at its start and its wall time) is copied to
`experiments/results/demo/<stamp>/run_<i>.json`, and `experiments/results/demo/<stamp>/runs.md` says how many
runs met each claim of `mexjax.demo.CLAIMS`. A rerun with the same `--stamp` skips finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import ROOT
from experiments.timing_corpus import LOADS, _spinners
from mexjax.demo import CLAIMS

RESULTS = ROOT / "experiments" / "results" / "demo"


def run_once(out: Path, seed: int, load: str, extra: list[str]) -> dict:
    """One demo run under `load`; its summary with the wall time and the load around it."""
    spinners = _spinners(LOADS[load])
    try:
        time.sleep(2 if spinners else 0)  # let the spinners take their cores
        before = [round(x, 2) for x in os.getloadavg()]
        start = time.perf_counter()
        command = ["bash", str(ROOT / "scripts" / "demo.sh"), "--out", str(out), "--seed", str(seed), *extra]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = [round(x, 2) for x in os.getloadavg()]
    finally:
        for p in spinners:
            p.kill()
    (out / "printed.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "printed.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return {"seed": seed, "error": " / ".join(tail), "seconds": round(seconds, 1), "load": load}
    summary = json.loads((out / "summary.json").read_text())
    summary.update(seed=seed, seconds=round(seconds, 1), load=load, load_average_before=before,
                   load_average_after=after)  # fmt: skip
    return summary


def table(runs: list[dict]) -> str:
    """Markdown: one row per run (claims, key numbers) and the count of runs meeting each claim."""
    names = list(CLAIMS)
    lines = [
        "| run | load avg (1 min) before / after | wall s | exits (victim) | aligned bal. | ACC victim / ours"
        " / KO | CLO test ours / KO | CLO nat. ours / KO | CC ours / KO / victim (MFLOPs) | claims met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['seed']} | | {r['seconds']} | error: {r['error']} | | | | | | 0 |")
            continue
        a, ours, ko = r["attack"], r["attack"]["table"]["ours"], r["attack"]["table"]["knockoff"]
        mflops = [x / 1e6 for x in (ours["mean_flops"], ko["mean_flops"], ours["victim_mean_flops"])]
        cells = [
            r["seed"],
            f"{r['load_average_before'][0]} / {r['load_average_after'][0]}",
            r["seconds"],
            f"{a['estimated_exits']} ({a['victim_exits']})",
            f"{a['exit_prediction']['aligned_balanced_accuracy']:.3f}",
            f"{ours['victim_accuracy']:.3f} / {ours['accuracy']:.3f} / {ko['accuracy']:.3f}",
            f"{ours['closeness']:.3f} / {ko['closeness']:.3f}",
            f"{ours['closeness_queries']:.3f} / {ko['closeness_queries']:.3f}",
            " / ".join(f"{x:.2f}" for x in mflops),
            f"{sum(r['claims'].values())} of {len(names)}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "| claim | runs that met it |", "|---|---|"]
    for name in names:
        count = sum(1 for r in runs if "claims" in r and r["claims"][name])
        lines.append(f"| {CLAIMS[name]} | {count} of {len(runs)} |")
    within = sum(1 for r in runs if r.get("seconds", 1e9) <= 600)
    lines.append(f"| the whole command within 10 minutes | {within} of {len(runs)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--load", choices=sorted(LOADS), default="one")
    parser.add_argument("--stamp", default=time.strftime("%Y-%m-%d"))
    parser.add_argument("demo_args", nargs="*", help="extra flags for the demo (after --)")
    args = parser.parse_args(argv)
    folder = RESULTS / args.stamp
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(args.runs):
        kept = folder / f"run_{i}.json"
        if kept.exists():
            continue
        out = ROOT / "outputs" / "demo_runs" / args.stamp / f"run_{i}"
        summary = run_once(out, i, args.load, args.demo_args)
        kept.write_text(json.dumps(summary, indent=1))
        if (out / "runtimes.png").exists():
            shutil.copy(out / "runtimes.png", folder / f"runtimes_{i}.png")
        print(f"run {i}: {summary.get('claims', summary.get('error'))} in {summary['seconds']} s", flush=True)
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("run_*.json"))]
    extra = " -- " + " ".join(args.demo_args) if args.demo_args else ""
    header = (
        f"# The main command, {len(runs)} runs with load `{args.load}` ({LOADS[args.load]} core(s) kept busy "
        f"by spinning processes), {args.stamp}\n\nWritten by `experiments/demo_runs.py"
        f" --runs {args.runs} --load {args.load}{extra}`."
        "\n\n"
    )
    (folder / "runs.md").write_text(header + table(runs))
    print((folder / "runs.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
