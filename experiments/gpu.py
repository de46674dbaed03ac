"""One prepared accelerator run: device facts, a GPU correctness subset, the network benchmarks beside
the PyTorch reference, and seed 000 at paper scale, inside a time budget, resumable step by step.

    bash scripts/gpu.sh [--scale full|smoke] [--out DIR] [--steps ...] [--time-budget SECONDS]
    .venv/bin/python experiments/gpu.py bundle [--dest device_carry/data]   # the data that travels

A GPU is lent rarely and briefly, so everything it should do is here, ready, rehearsed on the CPU with
`--scale smoke`. Every step's record goes into `<out>/gpu_results.json` as soon as the step ends; a
second call with the same `--out` (its files copied back in) skips the finished steps. A step that
would not fit in the time left is not started. At most 8 files are written into `--out`, none in a
sub-folder: gpu_results.json, gpu_results.md, and the seed-000 cell's summary and figures.

Steps, biggest claim last so that the cheap ones always come back:
- device: the accelerator, driver and JAX version;
- correctness: per architecture, the three inference paths (all exits under the policy, batched early
  exit, batch-1 early exit) give the same exits (probabilities within a stated tolerance), the batched
  path does not compile again after warm-up, and batch-1 time grows with the exit reached;
- bench: `benchmarks/bench_nets.py` rows (training at batch 128 in float32 and 512 in bfloat16,
  all-exits eval, batched early exit, batch-1 latency per exit), beside the H100 PyTorch figures;
- seed000_vgg16_cifar10: a full-width 7-exit VGG16-SDN trained on CIFAR-10 q75 (SDN's recipe with fewer
  epochs), then ours and KnockoffNets with every TinyImageNet image the attacker holds, timing measured
  at batch 1 on the device: the demo's pipeline (`mexjax.demo`) at paper scale, claims judged the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root holds `experiments` and `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import pick_scale

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
BUNDLE = ROOT / "device_carry" / "data"  # git-ignored; `bundle` writes it, the device run reads it
MAX_FILES = 8

# one H100, PyTorch SDN code, batch 128, data on the GPU (docs/benchmarks.md): train / eval img/s, batch-1
# first exit / full network ms
TORCH_H100 = {
    "vgg16": {"train_img_s": 7072, "eval_img_s": 104112, "batch1_ms": (1.12, 5.81)},
    "resnet56": {"train_img_s": 2740, "eval_img_s": 51175, "batch1_ms": (None, 14.6)},
    "mobilenet": {"train_img_s": 5723, "eval_img_s": 81033, "batch1_ms": (1.97, 6.54)},
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """What one run does at a scale (plain data)."""

    width: float  # the networks' width
    check_archs: tuple[str, ...]  # the correctness subset
    bench_archs: tuple[str, ...]
    bench_runs: tuple[tuple[int, str], ...]  # (batch, compute dtype) per benchmark row
    bench_steps: int
    victim_epochs: int  # seed 000: the victim's epochs (SDN recipe, milestones scaled)
    victim_images: int | None  # CIFAR-10 training images (None: all but the held-out 5,000)
    student_epochs: int
    timed: int  # ours: images timed `passes` times
    passes: int
    queries: int | None  # distinct TinyImageNet queries (None: every one the attacker holds)
    held_out: int
    timing: str  # "measured" on the device; "simulated" (the FLOPs cost model) in the CPU rehearsal, whose
    # tiny one-epoch victim on a loaded CPU need not show its exits in 60 timed queries
    estimates: dict  # seconds each step is expected to take (a step is not started without them)


SCALES = {
    "full": Scale(
        width=1.0,
        check_archs=("vgg16", "resnet56", "mobilenet"),
        bench_archs=("vgg16", "resnet56", "mobilenet"),
        bench_runs=((128, "float32"), (512, "bfloat16")),
        bench_steps=20,
        victim_epochs=30,
        victim_images=None,
        student_epochs=20,
        timed=2000,
        passes=5,
        queries=None,
        held_out=1000,
        timing="measured",
        estimates={"device": 5, "correctness": 60, "bench": 150, "seed000_vgg16_cifar10": 300},
    ),
    "smoke": Scale(
        width=0.125,
        check_archs=("vgg16", "mobilenet"),
        bench_archs=("vgg16",),
        bench_runs=((8, "float32"), (8, "bfloat16")),
        bench_steps=1,
        victim_epochs=1,
        victim_images=512,
        student_epochs=1,
        timed=60,
        passes=2,
        queries=300,
        held_out=100,
        timing="simulated",
        estimates={"device": 1, "correctness": 20, "bench": 20, "seed000_vgg16_cifar10": 60},
    ),
}


def get_config(scale: str = "full") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


STEPS = ("device", "correctness", "bench", "seed000_vgg16_cifar10")


# ---- the steps ------------------------------------------------------------------------------------


def device_facts(scale: Scale, out: Path, work: Path, data_dir) -> dict:
    import jax

    device = jax.devices()[0]
    facts = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": len(jax.devices()),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        facts["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        facts["nvidia_smi"] = None  # no NVIDIA driver here (the CPU rehearsal)
    return facts


# exits must agree exactly; probabilities computed inside tiles of several rows may differ from the
# batch-1 path in the last bits (kernel choice by shape), within this absolute tolerance
PROBS_ATOL = 1e-5


def correctness(scale: Scale, out: Path, work: Path, data_dir) -> dict:
    import bench_nets
    import jax
    import numpy as np

    from mexjax import exits, nets

    rows = {}
    for arch in scale.check_archs:
        net = nets.build(arch, num_classes=10, num_exits=6 if arch == "mobilenet" else 7, width=scale.width)
        variables = net.init(jax.random.key(0))
        images = np.random.default_rng(1).integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
        runner = net.runner(tile=8, buckets=(8, 16, 32, 64))
        conf = np.asarray(exits.confidence(runner.all_exits(variables, images)))
        thresholds = _spread_thresholds(conf)
        exit_a, probs_a = runner.policy(variables, images, thresholds)
        exit_c, probs_c = runner.early_exit_batched(variables, images, thresholds)
        singles = [runner.early_exit_single(variables, images[i : i + 1], thresholds) for i in range(16)]
        exit_b = np.array([e for e, _ in singles])
        probs_b = np.stack([p for _, p in singles])
        runner.warmup(variables, images[:1], max_batch=64)
        with _CompileCounter() as counter:
            for n in (1, 5, 17, 48):
                runner.early_exit_batched(variables, images[:n], thresholds)
        latency = bench_nets.batch1_latency(net, variables, images[:1], repeats=50)
        rows[arch] = {
            "exit_histogram": np.bincount(exit_a, minlength=net.num_exits).tolist(),
            "exits_agree": bool(np.array_equal(exit_a, exit_c) and np.array_equal(exit_a[:16], exit_b)),
            "max_prob_diff_batched": float(np.abs(probs_a - probs_c).max()),
            "max_prob_diff_batch1": float(np.abs(probs_a[:16] - probs_b).max()),
            "compiles_after_warmup": counter.count,
            "batch1_ms_per_exit": [round(t, 4) for t in latency],
            "batch1_ordered": bool(all(a < b for a, b in itertools.pairwise(latency))),
        }
        row = rows[arch]
        row["ok"] = bool(
            row["exits_agree"]
            and max(row["max_prob_diff_batched"], row["max_prob_diff_batch1"]) <= PROBS_ATOL
            and row["compiles_after_warmup"] == 0
        )
    return {"probs_atol": PROBS_ATOL, "archs": rows, "ok": all(r["ok"] for r in rows.values())}


def _spread_thresholds(conf):
    """Per-IC thresholds halfway between two observed confidences, spreading samples over the exits."""
    import numpy as np

    out = []
    for i, c in enumerate(conf[:-1]):
        values = np.unique(c)
        j = min(int(len(values) * (0.5 + 0.4 * i / max(1, len(conf) - 2))), len(values) - 2)
        out.append(0.5 * (values[j] + values[j + 1]))
    return np.asarray(out, np.float32)


class _CompileCounter(logging.Handler):
    """Counts JAX's "Compiling ..." log records while active (jax.log_compiles)."""

    def __enter__(self):
        import jax

        self.count = 0
        self._log = jax.log_compiles(True)
        self._log.__enter__()
        self._logger = logging.getLogger("jax")
        self._level, self._propagate = self._logger.level, self._logger.propagate
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False  # counted here, not printed
        self._logger.addHandler(self)
        return self

    def emit(self, record):
        if "Compiling" in record.getMessage():
            self.count += 1

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        self._logger.propagate = self._propagate
        self._log.__exit__(*exc)


def bench(scale: Scale, out: Path, work: Path, data_dir) -> dict:
    import bench_nets

    rows = []
    for arch in scale.bench_archs:
        for batch, dtype in scale.bench_runs:
            row = bench_nets.bench(arch, scale.width, batch, scale.bench_steps, dtype)
            reference = TORCH_H100[arch]
            row["torch_h100"] = reference
            row["train_over_torch"] = row["train_img_s"] / reference["train_img_s"]
            row["eval_over_torch"] = row["eval_img_s"] / reference["eval_img_s"]
            rows.append(row)
            print(f"[gpu] bench {arch} b{batch} {dtype}: train {row['train_img_s']:.0f} img/s "
                  f"({row['train_over_torch']:.2f}x the H100 reference)", flush=True)  # fmt: skip
    return {"rows": rows}


def seed000(scale: Scale, out: Path, work: Path, data_dir) -> dict:
    """The demo's pipeline at paper scale: a full-width 7-exit VGG16-SDN on CIFAR-10 q75, stolen by ours
    and KnockoffNets with every TinyImageNet image the attacker holds, timing measured at batch 1."""
    from mexjax import demo, victim_training

    victim_dir = work / "seed000_victim"
    config = victim_training.VictimConfig(
        arch="vgg16",
        dataset="cifar10",
        num_exits=7,
        width=scale.width,
        epochs=scale.victim_epochs,
        train_subset=scale.victim_images,
        held_out=5000 if scale.victim_images is None else max(64, scale.victim_images // 4),
        data_dir=data_dir,
    )
    result = demo.train_or_set_aside(config, victim_dir)
    pool = 30_000 - scale.held_out if scale.queries is None else scale.queries  # TinyImageNet train + val
    demo_config = demo.DemoConfig(
        budget=pool + scale.timed * (scale.passes - 1),
        timed=scale.timed,
        passes=scale.passes,
        student_epochs=scale.student_epochs,
        student_width=scale.width,
        student_batch_size=128,
        held_out=scale.held_out,
        victim_dir=str(victim_dir),
        timing=scale.timing,
    )
    cell = work / "seed000_cell"
    summary = demo.run(cell, data_dir=data_dir, config=demo_config)
    for name in ("runtimes.png", "exits_test.png"):
        if (cell / name).exists():
            shutil.copy(cell / name, out / f"seed000_{name}")
    return {"victim": {k: result[k] for k in ("test", "thresholds", "minutes") if k in result},
            "summary": summary, "claims": summary["claims"]}  # fmt: skip


RUNNERS = {
    "device": device_facts,
    "correctness": correctness,
    "bench": bench,
    "seed000_vgg16_cifar10": seed000,
}


# ---- the run: budget, resume, outputs -------------------------------------------------------------


def run(scale_name: str, out: Path, *, work: Path, data_dir=None, steps=STEPS, time_budget=520.0) -> dict:
    """Run `steps` in order within `time_budget` seconds; returns the results record (also on disk)."""
    start = time.perf_counter()
    scale = get_config(scale_name)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_results.json"
    record = json.loads(path.read_text()) if path.exists() else {"steps": {}}
    if record.get("scale", scale_name) != scale_name:
        raise SystemExit(f"{path} holds a {record['scale']} run; use another --out for --scale {scale_name}")
    record["scale"] = scale_name
    for step in steps:
        if step in record["steps"] and "error" not in record["steps"][step]:
            print(f"[gpu] {step}: done before, skipped", flush=True)
            continue
        left = time_budget - (time.perf_counter() - start)
        if scale.estimates[step] > left:
            print(
                f"[gpu] {step}: needs ~{scale.estimates[step]} s, {left:.0f} s left: not started", flush=True
            )
            record.setdefault("not_started", []).append(step)
            break
        print(f"[gpu] {step} ...", flush=True)
        began = time.perf_counter()
        try:
            result = RUNNERS[step](scale, out, work, data_dir)
        except Exception as err:  # a failed step is recorded and the next one still runs
            result = {"error": f"{type(err).__name__}: {err}"}
            print(f"[gpu] {step} failed: {result['error']}", flush=True)
        result["seconds"] = round(time.perf_counter() - began, 1)
        record["steps"][step] = result
        record["not_started"] = [s for s in record.get("not_started", []) if s != step]
        _write(out, record)
        print(f"[gpu] {step}: {result['seconds']} s", flush=True)
    _write(out, record)
    return record


def _write(out: Path, record: dict):
    (out / "gpu_results.json").write_text(json.dumps(record, indent=1, default=str))
    (out / "gpu_results.md").write_text(markdown(record))
    files = [p for p in out.iterdir()]
    if len(files) > MAX_FILES or any(p.is_dir() for p in files):
        raise RuntimeError(f"{out} must hold at most {MAX_FILES} plain files; it holds {sorted(files)}")


def markdown(record: dict) -> str:
    """The run at a glance: device, correctness, benchmark rows beside the reference, seed 000 claims."""
    steps = record["steps"]
    lines = [f"# Accelerator run ({record['scale']} scale)", ""]
    facts = steps.get("device", {})
    if facts:
        lines += [
            f"Device: {facts.get('device_kind')} x {facts.get('devices')} ({facts.get('platform')}), "
            f"JAX {facts.get('jax')}; nvidia-smi: {facts.get('nvidia_smi')}",
            "",
        ]
    check = steps.get("correctness", {})
    if "archs" in check:
        lines += [
            "| arch | exits agree | max prob diff (batched / batch-1) | compiles after warm-up | "
            "batch-1 ms first / full | ordered |",
            "|---|---|---|---|---|---|",
        ]
        for arch, r in check["archs"].items():
            ms = r["batch1_ms_per_exit"]
            lines.append(
                f"| {arch} | {r['exits_agree']} | {r['max_prob_diff_batched']:.2e} / "
                f"{r['max_prob_diff_batch1']:.2e} | {r['compiles_after_warmup']} | {ms[0]:.3f} / "
                f"{ms[-1]:.3f} | {r['batch1_ordered']} |"
            )
        lines.append("")
    if "rows" in steps.get("bench", {}):
        lines += [
            "| arch | batch | dtype | train img/s (x H100 torch) | eval img/s (x torch) | "
            "early exit / eval | batch-1 ms first / full (torch) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in steps["bench"]["rows"]:
            ms, ref = r["batch1_latency_ms"], r["torch_h100"]["batch1_ms"]
            lines.append(
                f"| {r['arch']} w{r['width']:g} | {r['batch']} | {r['dtype']} | {r['train_img_s']:.0f} "
                f"({r['train_over_torch']:.2f}x) | {r['eval_img_s']:.0f} ({r['eval_over_torch']:.2f}x) | "
                f"{r['early_exit_over_eval']:.2f} | {ms[0]:.2f} / {ms[-1]:.2f} ({ref[0]} / {ref[1]}) |"
            )
        lines.append("")
    cell = steps.get("seed000_vgg16_cifar10", {})
    if "claims" in cell:
        lines += [
            "Seed 000, VGG16-SDN on CIFAR-10 q75: "
            + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in cell["claims"].items()),
            "",
        ]
    for step, result in steps.items():
        if "error" in result:
            lines.append(f"- {step} failed: {result['error']}")
    if record.get("not_started"):
        lines.append(f"- not started (time budget): {', '.join(record['not_started'])}")
    return "\n".join(lines) + "\n"


# ---- the data that travels ------------------------------------------------------------------------


def bundle(dest: Path, data_dir=None, quality: int = 90) -> dict:
    """CIFAR-10 q75 as it is and TinyImageNet re-encoded at 32x32 (the victim's input size), as the
    archives the loader knows, with a SHA256SUMS beside them: small enough to travel with the tree."""
    import hashlib

    import numpy as np
    from PIL import Image

    from mexjax import data
    from mexjax.data import _load

    dest.mkdir(parents=True, exist_ok=True)
    cifar = _load._find_archive("cifar10", _load.ARCHIVES["cifar10"], data_dir)
    shutil.copy(cifar, dest / cifar.name)
    stem = _load.ARCHIVES["tinyimagenet"].stem
    target = dest / f"{stem}.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for split in ("train", "val"):
            ds = data.load("tinyimagenet", split, data_dir=data_dir)
            small = np.asarray(data.to_input_shape(ds.images, (32, 32, 3), mode="resize"))
            for i, (pixels, label) in enumerate(zip(small, ds.labels, strict=True)):
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
                info = tarfile.TarInfo(f"{stem}/{split}/{ds.class_names[int(label)]}/{i:05d}.JPEG")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (dest / cifar.name, target)}
    (dest / "SHA256SUMS").write_text("".join(f"{h}  {name}\n" for name, h in sums.items()))
    sizes = {name: (dest / name).stat().st_size for name in sums}
    print(f"[gpu] bundle in {dest}: " + ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in sizes.items()))
    return sizes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", default="run", choices=["run", "bundle"])
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "outputs" / "gpu"))
    parser.add_argument("--work", default=str(ROOT / "outputs" / "gpu_work"), help="checkpoints, caches")
    parser.add_argument("--data-dir", default=None, help=f"datasets (default: {BUNDLE} when it exists)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument(
        "--time-budget", type=float, default=520.0, help="seconds; steps that would not fit wait"
    )
    parser.add_argument("--dest", default=str(BUNDLE), help="bundle: where to write the archives")
    args = parser.parse_args(argv)
    if args.command == "bundle":
        return bundle(Path(args.dest), args.data_dir)
    data_dir = args.data_dir or (str(BUNDLE) if BUNDLE.exists() else None)
    out = Path(args.out)
    return run(
        args.scale,
        out,
        work=Path(args.work) / args.scale,
        data_dir=data_dir,
        steps=args.steps,
        time_budget=args.time_budget,
    )


if __name__ == "__main__":
    main()
