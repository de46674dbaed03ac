"""Timing-leak countermeasures of a served victim (METHODS §7): what each buys and what it costs.

    .venv/bin/python experiments/serve.py --scale cpu      # FashionMNIST VGG16 victim, ~40 min on 2 cores
    .venv/bin/python experiments/serve.py --scale tiny     # for the tests

The victim (a 3-exit full-width FashionMNIST VGG16 SDN at cpu scale) is served by `python -m mexjax
serve` in a child process (a background thread at tiny scale) under each countermeasure: none,
constant-time answers (padded to the full network's measured time), uniform and exponential random
delays, and answers in time slots. The attacker, in this process, sends TinyImageNet images one per request
over loopback HTTP (`serve.RemoteOracle`, fastest of `passes` round trips), reads the exits from the round
trips (`exits.estimate_exits`) and steals a student with the unchanged attack code (`steal.timing_attack`;
when the timing shows one exit only, the plain copy without timing with `FALLBACK_EXITS` exits, the
attacker's guess). The evaluator, apart, loads the same checkpoint to know the true exits and score the
student (CLO, fidelity) on FashionMNIST test images. The victim's cost: latency p50/p95 of one client,
throughput with several concurrent clients (short bounded load tests) and the FLOPs early exit
still saves. Each row is appended to experiments/results/serve_countermeasures_<scale>.jsonl (reruns
skip it) with the load average, and the Markdown table beside it is rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import finished, machines, pick_scale
from experiments.cli import runner_parser
from mexjax import data, exits, metrics, nets, oracle, results, serve, victim_training
from mexjax.attacks import steal
from mexjax.results import append_record, read_records

ROWS = ("none", "constant", "uniform", "exponential", "batch")
FALLBACK_EXITS = 3  # the attacker's guess when the timing shows a single exit


@dataclasses.dataclass(frozen=True)
class Scale:
    victim: victim_training.VictimConfig
    queries: int  # distinct query images (the attacker's budget is queries x passes)
    passes: int
    student_arch: str
    student_width: float
    student_epochs: int
    test_images: int
    load_requests: int  # per load test (one client for latency, `concurrency` for throughput)
    concurrency: int
    delay: float  # seconds: the uniform maximum; the exponential mean is half of it
    window: float  # seconds: the slot of "batch"
    child_process: bool  # serve from `python -m mexjax serve` (else a thread of this process)


SCALES = {
    "tiny": Scale(
        victim=victim_training.VictimConfig(
            arch="vgg16", dataset="fashion_mnist", num_exits=3, width=0.125, epochs=1, batch_size=32,
            learning_rate=0.03, milestones=(0.75,), held_out=64, train_subset=512,
        ),
        queries=48, passes=2, student_arch="vgg16", student_width=0.125, student_epochs=1, test_images=64,
        load_requests=24, concurrency=2, delay=0.004, window=0.01, child_process=False,
    ),
    # full width: its exits must lie further apart than a loopback round trip's jitter (~1 ms here); in
    # one probe with untrained weights its exits answered ~1.5 / 6 / 42 ms apart at batch 1 on 2 cores,
    # the width-1/4 nets' ~1 ms apart (lost in the jitter: serve_countermeasures_cpu_resnet56_w025.md)
    "cpu": Scale(
        victim=victim_training.VictimConfig(
            arch="vgg16", dataset="fashion_mnist", num_exits=3, width=1.0, epochs=2, batch_size=128,
            learning_rate=0.03, milestones=(0.75,), held_out=1000, train_subset=4000,
        ),
        queries=800, passes=4, student_arch="vgg16", student_width=0.5, student_epochs=6, test_images=300,
        load_requests=150, concurrency=4, delay=0.01, window=0.02, child_process=True,
    ),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


def countermeasure(row: str, scale: Scale) -> serve.Countermeasure:
    return {
        "none": serve.Countermeasure(),
        "constant": serve.Countermeasure("constant"),
        "uniform": serve.Countermeasure("uniform", delay=scale.delay),
        "exponential": serve.Countermeasure("exponential", delay=scale.delay / 2),
        "batch": serve.Countermeasure("batch", window=scale.window),
    }[row]


@contextlib.contextmanager
def served(row: str, scale: Scale, model_dir: Path, budget: int):
    """The victim served under the row's countermeasure; yields its URL."""
    cm = countermeasure(row, scale)
    if scale.child_process:
        args = ["--checkpoint", str(model_dir), "--budget", str(budget), "--countermeasure", cm.kind,
                "--delay", str(cm.delay), "--window", str(cm.window)]  # fmt: skip
        with serve.child_process(args) as url:
            yield url
        return
    net, variables, thresholds, _ = nets.load(model_dir)
    answering = oracle.Oracle(net, variables, thresholds, budget=2**62)
    config = serve.ServeConfig(budget=budget, countermeasure=cm)
    with serve.background(serve.create_app(answering, config)) as url:
        yield url


class Recorded:
    """The answers the attacker collected over the network, handed to the unchanged attack code (which
    asks its oracle once): the timing analysis and the student read the same round trips."""

    def __init__(self, remote: serve.RemoteOracle, answers: oracle.QueryResult):
        self.input_shape, self.num_classes, self.used = remote.input_shape, remote.num_classes, remote.used
        self._answers = answers

    def query(self, images, *, passes: int = 1, timed: bool = True) -> oracle.QueryResult:
        if len(images) != len(self._answers):
            raise ValueError(f"recorded {len(self._answers)} answers, asked for {len(images)}")
        return self._answers


def run_row(row: str, scale_name: str, setting: dict, model_dir: Path, progress: bool) -> dict:
    scale = get_config(scale_name)
    queries, test, evaluator = setting["queries"], setting["test"], setting["evaluator"]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    budget = max(scale.queries * scale.passes, scale.load_requests)
    with served(row, scale, model_dir, budget) as url:
        with serve.RemoteOracle(url, client_id="attacker") as remote:  # the attacker's side
            answers = remote.query(queries, passes=scale.passes)
            recorded = Recorded(remote, answers)
        latency = serve.load_test(url, queries, requests=scale.load_requests, concurrency=1, client_id="one")
        throughput = serve.load_test(
            url, queries, requests=scale.load_requests, concurrency=scale.concurrency, client_id="many"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single hump is reported in the record
        estimated, found = exits.estimate_exits(answers.runtimes)
        result, student = _steal(recorded, queries, setting, scale, progress)
    true = oracle.true_exits(evaluator, queries)  # the evaluator's side from here on
    prediction = metrics.exit_prediction(estimated, true)
    report = steal.evaluate(evaluator, result, test.images, test.labels)
    held = setting["held_out"]  # natural images never queried: the query distribution
    natural = steal.evaluate(evaluator, result, held, np.zeros(len(held), np.int32))
    net = oracle.deployed(evaluator).net
    flops = np.asarray(nets.exit_flops(net), np.float64)
    cm = countermeasure(row, scale)
    return {
        "row": row,
        "countermeasure": dataclasses.asdict(cm),
        "victim": f"{scale.victim.dataset} {scale.victim.arch} w{scale.victim.width} k{net.num_exits}",
        "victim_exits": net.num_exits,
        "estimated_exits": int(found),
        "true_exit_histogram": np.bincount(true, minlength=net.num_exits).tolist(),
        "exit_accuracy": prediction["accuracy"],
        "exit_balanced_accuracy": prediction["balanced_accuracy"],
        "exit_aligned_accuracy": prediction["aligned_accuracy"],
        "best_boundary": metrics.best_boundary_accuracy(answers.runtimes, true),
        "student": student,
        "student_exits": report["student_exits"],
        "closeness": report["closeness"],
        "fidelity": report["fidelity"],
        "closeness_queries": natural["closeness"],
        "fidelity_queries": natural["fidelity"],
        "exit_agreement_queries": natural["exit_agreement"],
        "student_accuracy": report["accuracy"],
        "victim_accuracy": report["victim_accuracy"],
        "round_trip_ms_median": float(np.median(answers.runtimes) * 1e3),
        "latency_p50_ms": latency["p50_ms"],
        "latency_p95_ms": latency["p95_ms"],
        "throughput_one_client": latency["requests_per_s"],
        "throughput": throughput["requests_per_s"],
        "throughput_p95_ms": throughput["p95_ms"],
        "load_errors": {**latency["errors"], **throughput["errors"]},
        "concurrency": scale.concurrency,
        "flops_saved": float(1 - flops[true].mean() / flops[-1]),
        "queries": len(queries),
        "passes": scale.passes,
        "timing": answers.timing,
        "served_from": "child process" if scale.child_process else "thread",
        "scale": scale_name,
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "machine": results.machine_description() + ", no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
    }


def _steal(recorded: Recorded, queries, setting: dict, scale: Scale, progress: bool):
    """The attack on the recorded answers; the plain copy when the timing shows a single exit."""
    config = steal.StealConfig(
        arch=scale.student_arch, width=scale.student_width, epochs=scale.student_epochs, passes=scale.passes
    )
    try:
        return steal.timing_attack(recorded, queries, config, progress=progress), "ours (timing)"
    except ValueError as err:
        if "single exit" not in str(err):
            raise
    plain = dataclasses.replace(config, use_timing=False, num_exits=FALLBACK_EXITS)
    student = f"plain copy, {FALLBACK_EXITS} exits (timing showed one)"
    return steal.timing_attack(recorded, queries, plain, progress=progress), student


def make_setting(scale_name: str, args) -> tuple[dict, Path]:
    """The victim (trained once, cached under outputs/), the attacker's queries and the test set."""
    scale = get_config(scale_name)
    config = dataclasses.replace(scale.victim, data_dir=args.data_dir)
    out = (
        Path(args.outputs)
        / "victims"
        / scale_name
        / f"serve_{config.dataset}_{config.arch}_w{config.width:g}_k{config.num_exits}"
    )
    net, variables, thresholds, _ = victim_training.load_or_train(config, out, progress=not args.quiet)
    pool = data.load("tinyimagenet", "train", data_dir=args.data_dir)
    pool = data.subset(pool, jax.random.key(11), scale.queries)
    held = data.load("tinyimagenet", "val", data_dir=args.data_dir)
    held = data.subset(held, jax.random.key(13), scale.test_images)
    test = data.load(config.dataset, "test", data_dir=args.data_dir)
    test = data.fit_dataset(data.subset(test, jax.random.key(7), scale.test_images), net.input_shape)
    setting = {
        "queries": np.asarray(data.to_input_shape(pool.images, net.input_shape)),
        "test": test,
        "held_out": np.asarray(data.to_input_shape(held.images, net.input_shape)),
        "evaluator": oracle.Oracle(net, variables, thresholds, budget=0),  # true exits and CLO only
    }
    return setting, out / "model"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def write_markdown(records: list[dict], scale: str) -> str:
    base = next((r for r in records if r["row"] == "none"), None)
    lines = [
        f"# Timing-leak countermeasures of a served victim ({scale} scale)",
        "",
        f"Written by `experiments/serve.py --scale {scale}` from `serve_countermeasures_{scale}.jsonl`. "
        f"Machine: {machines(records)}. The victim is served on loopback HTTP from a "
        f"{records[0]['served_from'] if records else '-'} of the runner (a child process runs "
        "`python -m mexjax serve`); the attacker's clock runs in the runner. The load average before and "
        "after each row is in the last column (other work on the machine adds timing noise).",
        "",
        "Exit prediction: the KDE analysis of the attacker's round trips (fastest of the passes) against the "
        "true exits (balanced = mean per-exit recall; best rule = the best any time-threshold rule could do "
        "knowing the truth). Student: CLO (same label at the same exit as the victim) and fidelity (same "
        "label) on FashionMNIST test images and on natural images never queried (TinyImageNet val, the "
        "query distribution), and its exit agreement with the victim there. Attacker's round trip: the "
        "median over the queries of the fastest of their passes (the times the analysis reads). Latency "
        "(a load test): one client sending one image at a time, one pass; throughput: answers/s with "
        "several concurrent clients. FLOPs saved: the "
        "share of the full network's FLOPs that early "
        "exit still saves on the attacker's queries (padding and delays sleep, they compute nothing).",
        "",
        "| countermeasure | exits found / true | exit acc. | balanced | best rule (acc / bal.) | student "
        "| CLO test / natural | fidelity test / natural | exit agr. natural | attacker's round trip (ms) "
        "| latency p50 / p95 (ms) | vs none (p50) | throughput (answers/s) | FLOPs saved "
        "| load avg (before / after) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {row: i for i, row in enumerate(ROWS)}
    for r in sorted(records, key=lambda r: order.get(r["row"], 99)):
        b = r["best_boundary"]
        ratio = f"{r['latency_p50_ms'] / base['latency_p50_ms']:.2f}x" if base else "-"
        lines.append(
            f"| {_describe(r)} | {r['estimated_exits']} / {r['victim_exits']} | {r['exit_accuracy']:.3f} "
            f"| {r['exit_balanced_accuracy']:.3f} | {b['accuracy']:.3f} / {b['balanced_accuracy']:.3f} "
            f"| {r['student']} | {r['closeness']:.3f} / {r['closeness_queries']:.3f} "
            f"| {r['fidelity']:.3f} / {r['fidelity_queries']:.3f} | {r['exit_agreement_queries']:.3f} "
            f"| {_ms(r['round_trip_ms_median'])} | {_ms(r['latency_p50_ms'])} / {_ms(r['latency_p95_ms'])} "
            f"| {ratio} "
            f"| {r['throughput']:.0f} ({r['concurrency']} clients) | {r['flops_saved']:.1%} "
            f"| {r['load_before']} / {r['load_after']} |"
        )
    if records:
        r = records[0]
        histogram = np.asarray(r["true_exit_histogram"])
        lines += [
            "",
            f"Victim: {r['victim']}, test accuracy {r['victim_accuracy']:.3f}; {r['queries']} TinyImageNet "
            f"queries x {r['passes']} passes per row; true exits of the queries {histogram.tolist()}. "
            f"Chance (no timing information): exit accuracy {histogram.max() / histogram.sum():.3f} (always "
            f"the most common exit), balanced {1 / np.count_nonzero(histogram):.3f}. Throughput is that of "
            f"{r['concurrency']} clients each waiting for its answer before the next request, so it falls "
            "with latency even where the server's worker is idle while answers wait.",
        ]
    return "\n".join(lines) + "\n"


def _describe(r: dict) -> str:
    cm = r["countermeasure"]
    return {
        "none": "none",
        "constant": "constant time (pad = full net, measured)",
        "uniform": f"uniform delay [0, {cm['delay'] * 1e3:g} ms]",
        "exponential": f"exponential delay (mean {cm['delay'] * 1e3:g} ms)",
        "batch": f"time slots of {cm['window'] * 1e3:g} ms",
    }[r["row"]]


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    args = parser.parse_args(argv)
    path = Path(args.results) / f"serve_countermeasures_{args.scale}.jsonl"
    done = finished(path, lambda r: r["row"])
    todo = [row for row in args.rows if row not in done]
    if todo:
        setting, model_dir = make_setting(args.scale, args)
        for row in todo:
            record = run_row(row, args.scale, setting, model_dir, progress=not args.quiet)
            append_record(path, record)
            print(f"[serve] {row}: exit acc {record['exit_accuracy']:.3f}, CLO {record['closeness']:.3f}, "
                  f"p50 {record['latency_p50_ms']:.2f} ms ({record['seconds']} s)")  # fmt: skip
    else:
        print("[serve] all rows done, skipped")
    markdown = path.with_suffix(".md")
    markdown.write_text(write_markdown(read_records(path), args.scale))
    print(markdown.read_text())


if __name__ == "__main__":
    main()
