"""XLA's CPU options measured on the multi-exit networks: which settings make training and inference fast.

    .venv/bin/python benchmarks/bench_xla_flags.py         # every option set, three nets at width 1/4
    .venv/bin/python benchmarks/bench_xla_flags.py --options default onednn --archs vgg16 --widths 1

XLA reads its options once, when JAX starts its CPU backend, so each option set runs `bench_nets.py` in a
fresh process with XLA_FLAGS set (plus JAX_PLATFORMS=cpu). Rows: training, all-exits evaluation,
batched early exit (img/s) and batch-1 latency of the first and the last exit, each beside the same
row under the default options (the ratio), and beside the PyTorch eager reference where a
`benchmarks/results/torch-*.json` from `torch_reference.py` holds that network. One run on one
machine: read ratios of a few percent as noise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import results_file

HERE = Path(__file__).resolve().parent

# What each option set asks of XLA (flags as the installed jaxlib accepts them; see its --help text):
OPTIONS = {
    "default": "",
    # oneDNN (Intel's deep-learning kernels) for the operations it supports
    "onednn": "--xla_cpu_use_onednn=true",
    # XNNPACK (Google's mobile/CPU kernels) for the operations it supports
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    # XNNPACK fusions of dots, elementwise ops and reductions
    "xnn-fusions": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    # XNNPACK subgraphs extracted greedily by XLA's XnnGraphFusion pass
    "xnn-graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    # looser floating point (reassociation, no NaN / inf care): faster math, other bits
    "fast-math": "--xla_cpu_enable_fast_math=true",
    # one thread for XLA's Eigen kernels (2 cores: is the second one worth its synchronisation?)
    "one-thread": "--xla_cpu_multi_thread_eigen=false",
}


def run_option(name: str, flags: str, archs, widths, batch: int, steps: int, dtype: str) -> dict:
    """bench_nets.py in a fresh process under `flags`: its rows, or the error it died with."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        cmd = [sys.executable, str(HERE / "bench_nets.py"), "--archs", *archs,
               "--widths", *[str(w) for w in widths], "--batch", str(batch), "--steps", str(steps),
               "--dtype", dtype, "--out", str(out)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return {
                "option": name,
                "flags": flags,
                "error": lines[-1] if lines else f"exit {done.returncode}",
            }
        return {"option": name, "flags": flags, "rows": json.loads(out.read_text())["rows"]}


def torch_reference() -> dict:
    """(arch, width, batch) -> the newest PyTorch reference row in benchmarks/results/."""
    ref = {}
    for path in sorted((HERE / "results").glob("torch-*.json")):
        if "deepsloth" in path.name:
            continue
        for row in json.loads(path.read_text()).get("rows", []):
            ref[(row["arch"], float(row["width"]), int(row["batch"]))] = row
    return ref


def markdown(results: list[dict], machine: str) -> str:
    """One table: each option's figures and their ratio to the default options (and to PyTorch)."""
    base = {
        (r["arch"], float(r["width"])): r
        for res in results
        if res["option"] == "default"
        for r in res.get("rows", [])
    }
    ref = torch_reference()
    lines = [
        f"XLA CPU options on {machine}, {datetime.date.today()} (`benchmarks/bench_xla_flags.py`); "
        "img/s (ratio to the default options; ratio to PyTorch eager where measured).",
        "",
        "| option | network | train img/s | eval img/s | early exit img/s | batch-1 first / full ms |",
        "|---|---|---|---|---|---|",
    ]

    def cell(value, default, torch=None):
        text = f"{value:.0f}" if value >= 10 else f"{value:.2f}"
        if default:
            text += f" ({value / default:.2f}x"
            text += f"; {value / torch:.2f}x PyTorch)" if torch else ")"
        return text

    for res in results:
        if "error" in res:
            lines.append(f"| {res['option']} | - | failed: {res['error']} | | | |")
            continue
        for r in res["rows"]:
            key = (r["arch"], float(r["width"]))
            b = base.get(key, {})
            t = ref.get((*key, int(r["batch"])), {})
            lat = r["batch1_latency_ms"]
            blat = b.get("batch1_latency_ms", [None, None])
            lines.append(
                f"| {res['option']} | {r['arch']} w{r['width']:g} b{r['batch']} {r['dtype']} "
                f"| {cell(r['train_img_s'], b.get('train_img_s'), t.get('train_img_s'))} "
                f"| {cell(r['eval_img_s'], b.get('eval_img_s'), t.get('eval_img_s'))} "
                f"| {cell(r['early_exit_img_s'], b.get('early_exit_img_s'))} "
                f"| {lat[0]:.2f} / {lat[-1]:.2f}"
                + (f" ({blat[0] / lat[0]:.2f}x / {blat[-1] / lat[-1]:.2f}x)" if blat[0] else "")
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet56", "mobilenet"])
    parser.add_argument("--widths", nargs="+", type=float, default=[0.25])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", default=None, help="JSON of every option's rows")
    args = parser.parse_args(argv)
    names = ["default", *[n for n in args.options if n != "default"]]  # the reference runs first
    results = []
    for name in names:
        print(f"[xla-flags] {name}: XLA_FLAGS={OPTIONS[name]!r}", flush=True)
        results.append(
            run_option(name, OPTIONS[name], args.archs, args.widths, args.batch, args.steps, args.dtype)
        )
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    text = markdown(results, machine)
    print(text)
    results_file.write("xla-flags", machine, args.out, results=results)
    return results


if __name__ == "__main__":
    main()
