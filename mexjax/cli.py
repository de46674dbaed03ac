"""Command line: `python -m mexjax <command>`. Each command is a thin wrapper over library calls."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _writable_folder(path) -> Path:
    """Create the output folder `path` (and its parents) if needed and check that files can be written
    there, before a command spends any time on its work."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mexjax-write-check-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"cannot write the output folder {folder}: {reason}; pass another --out") from err
    return folder


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


def _cmd_data(args) -> int:
    from mexjax import data

    names = args.names or list(data.NAMES)
    failed = 0
    for name in names:
        for split in data.splits_of(name):
            try:
                t0 = time.perf_counter()
                ds = data.load(name, split, data_dir=args.data_dir)
                print(f"{ds!r}  loaded in {time.perf_counter() - t0:.2f}s")
            except data.DatasetNotFoundError as err:  # a known dataset whose files are not here
                print(f"{name}/{split}: not available: {err}")
            except data.DataError as err:  # an unknown name, a corrupt archive, a missing split
                print(f"mexjax: error: {name}/{split}: {_one_line(err)}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def _cmd_demo(args) -> int:
    _writable_folder(args.out)
    from mexjax import demo

    config = demo.DemoConfig(
        seed=args.seed,
        budget=args.budget,
        timed=args.timed,
        passes=args.passes,
        retime=args.retime,
        balance_exits=args.balance_exits,
        student_epochs=args.student_epochs,
        student_width=args.student_width,
        student_batch_size=args.student_batch_size,
        held_out=args.held_out,
        victim_dir=args.victim,
        train_victim=args.train_victim,
        victim_images=args.victim_images,
        victim_epochs=args.victim_epochs,
        pretrained_dir=None if args.no_pretrained else args.pretrained,
        pretrain_epochs=args.pretrain_epochs,
        timing=args.timing,
    )
    summary = demo.run(Path(args.out), args.data_dir, config)
    print(f"{'dataset':<22}{'images':>8}  {'shape':<14}{'classes':>8}{'load s':>9}")
    for name, info in summary["datasets"].items():
        shape = "x".join(map(str, info["shape"]))
        print(f"{name:<22}{info['images']:>8}  {shape:<14}{info['classes']:>8}{info['load_seconds']:>9.2f}")
    v = summary["victim"]
    print(
        f"victim: {v['arch']} width {v['width']} on {v['dataset']}, test accuracy per exit "
        f"{v['accuracy_per_exit']}; thresholds {v['thresholds']}: accuracy {v['accuracy_early_exit']:.4f} at "
        f"{v['flops_ratio']:.0%} of the full FLOPs, exits {v['exit_histogram']}; inference paths agree: "
        f"{v['inference_paths_agree']}"
    )
    a = summary["attack"]
    p = a["exit_prediction"]
    b = a["best_boundary"]  # what the timing allows: the best thresholds chosen knowing the true exits
    print(
        f"timing: {a['timed']} of {a['queries']} queries timed, {a['timing']}, {a['passes']} passes each "
        f"({a['retime']}): {a['estimated_exits']} exits found (the victim has {a['victim_exits']}; "
        f"its exits on these queries {a['true_exit_histogram']}); exit prediction balanced "
        f"{p['balanced_accuracy']:.3f}, aligned balanced {p['aligned_balanced_accuracy']:.3f} (the best "
        f"time-threshold rule knowing the truth: {b['balanced_accuracy']:.3f})"
    )
    print(
        f"same budget ({a['budget']} queries): ours {a['queries']} images ({a['timed']} x {a['passes']} "
        f"timings), KnockoffNets {a['knockoff_queries']} images; student pre-trained: "
        f"{summary['pretrained'] is not None}. CLO nat.: on {a['held_out_queries']} natural images never "
        "queried"
    )
    print(f"{'model':<10}{'ACC':>8}{'fidelity':>10}{'CLO':>8}{'CLO nat.':>10}{'CC (MFLOPs)':>13}{'exits':>7}")
    first = next(iter(a["table"].values()))
    one = 1.0
    print(
        f"{'victim':<10}{first['victim_accuracy']:>8.4f}{one:>10.4f}{one:>8.4f}{one:>10.4f}"
        f"{first['victim_mean_flops'] / 1e6:>13.2f}{a['victim_exits']:>7}"
    )
    for name, row in a["table"].items():
        found = a["estimated_exits"] if name == "ours" else "-"
        print(
            f"{name:<10}{row['accuracy']:>8.4f}{row['fidelity']:>10.4f}{row['closeness']:>8.4f}"
            f"{row['closeness_queries']:>10.4f}{row['mean_flops'] / 1e6:>13.2f}{found:>7}"
        )
    claims = summary["claims"]
    for name, ok in claims.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {demo.CLAIMS[name]}")
    print(f"claims held: {sum(claims.values())} of {len(claims)}")
    phases = ", ".join(f"{name} {sec:.0f} s" for name, sec in summary.get("phases", {}).items())
    print(f"phases: {phases}; load average at the start {summary['load_average']}")
    print(f"figures: {a['figure']}, {a['exit_figure']}, {summary['figure']}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 0


def _cmd_slowdown(args) -> int:
    _writable_folder(args.out)
    from mexjax.attacks import slowdown

    result = slowdown.run(
        args.checkpoint, args.dataset, args.out, split=args.split, images=args.images, norm=args.norm,
        eps=args.eps, step=args.step, steps=args.steps, defense=args.defense, data_dir=args.data_dir,
        seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    print(f"{'':<10}{'accuracy':>10}{'efficacy':>10}{'FLOPs':>8}  exits")
    for name in ("clean", "attacked"):
        o = result[name]
        row = f"{name:<10}{o['accuracy']:>10.4f}{o['efficacy']:>10.3f}{o['flops_ratio']:>8.1%}"
        print(f"{row}  {o['exit_histogram']}")
    print(f"DeepSloth {args.norm} in {result['attack']['seconds']} s; defense: {args.defense}")
    print(f"result: {Path(args.out) / 'result.json'}; figure: {Path(args.out) / 'efficacy.png'}")
    return 0


def _cmd_serve(args) -> int:
    from mexjax import nets, oracle, serve

    net, variables, thresholds, _ = nets.load(args.checkpoint)
    if thresholds is None:
        raise ValueError(f"{args.checkpoint} holds no thresholds: save the victim with its thresholds")
    countermeasure = serve.Countermeasure(
        kind=args.countermeasure, delay=args.delay, window=args.window, full_time=args.full_time
    )
    config = serve.ServeConfig(
        budget=args.budget, max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes, countermeasure=countermeasure, seed=args.seed,
        read_timeout=args.read_timeout, max_clients=args.max_clients,
    )  # fmt: skip
    # the served oracle's own budget is unbounded: each client has `--budget` queries
    victim = oracle.Oracle(net, variables, thresholds, budget=sys.maxsize, output=args.output)
    app = serve.create_app(victim, config)
    cm = app.state.service.config.countermeasure
    pad = f", pad {cm.full_time * 1e3:.3f} ms per image" if cm.kind == "constant" else ""
    print(f"serving {args.checkpoint} ({args.output}; countermeasure {cm.kind}{pad})", file=sys.stderr)
    serve.serve_forever(app, args.host, args.port)
    return 0


def _cmd_train_victim(args) -> int:
    _writable_folder(args.out)
    from mexjax import victim_training

    thresholds = tuple(float(t) for t in args.thresholds.split(",")) if args.thresholds else None
    config = victim_training.VictimConfig(
        arch=args.arch,
        dataset=args.dataset,
        num_exits=args.exits,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        recipe=args.recipe,
        weight_decay=args.weight_decay,
        dtype="bfloat16" if args.bf16 else "float32",
        held_out=args.held_out,
        train_subset=args.train_subset,
        input_size=args.input_size,
        max_drop=args.max_drop,
        threshold=args.threshold,
        thresholds=thresholds,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    result = victim_training.train_victim(config, args.out, progress=not args.quiet)
    test = result["test"]
    print(f"test accuracy per exit: {' '.join(f'{a:.4f}' for a in test['accuracy_per_exit'])}")
    print(
        f"thresholds {result['thresholds']} ({result['thresholds_how']}): accuracy "
        f"{test['accuracy_early_exit']:.4f}, mean FLOPs {test['mean_flops'] / 1e6:.2f} M "
        f"({test['flops_ratio']:.1%} of the full {test['full_flops'] / 1e6:.2f} M)"
    )
    print(f"exit histogram: {test['exit_histogram']}")
    print(
        f"took {result['minutes']} min on {result['machine']}; "
        f"wrote {args.out}/result.json, model/, exits.png"
    )
    return 0


_DEBUG_HELP = "on an error, show the full traceback instead of one line"


def build_parser() -> argparse.ArgumentParser:
    """The `mexjax` command line: one subcommand per function below, flags shared through parents."""
    parser = argparse.ArgumentParser(
        prog="mexjax",
        description=__doc__,
        epilog="Errors in what was asked (a bad value, a missing file or dataset, an exhausted budget) are "
        "reported as one line `mexjax: error: ...` with exit status 1; --debug shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    # --debug is also accepted after the command (SUPPRESS: the subcommand does not reset it to False)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=None, help="folder with the dataset archives")
    common = argparse.ArgumentParser(add_help=False, parents=[data_dir])
    common.add_argument("--seed", type=int, default=0)
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    _demo_command(commands, debug, common)
    _train_victim_command(commands, debug, common, quiet)
    _slowdown_command(commands, debug, common, quiet)
    _serve_command(commands, debug)
    _data_command(commands, debug, data_dir)
    return parser


def _demo_command(commands, debug, common) -> None:
    """The README's main job."""
    demo = commands.add_parser(
        "demo", parents=[debug, common], help="CPU-sized demo of what mexjax does (the README's main job)"
    )
    demo.add_argument("--out", default="outputs/demo", help="folder for the demo's figures and summary")
    from mexjax.demo import DemoConfig  # plain data (its module loads JAX: about a second)

    defaults = DemoConfig()
    demo.add_argument("--budget", type=int, default=defaults.budget, help="queries each attack may spend")
    demo.add_argument("--timed", type=int, default=defaults.timed, help="ours: images timed --passes times")
    demo.add_argument(
        "--passes", type=int, default=defaults.passes, help="ours: timing passes per timed image"
    )
    demo.add_argument("--retime", choices=("adaptive", "uniform"), default=defaults.retime)
    demo.add_argument(
        "--balance-exits",
        action="store_true",
        help="ours: search the thresholds with each estimated exit's timed images weighed equally",
    )
    demo.add_argument("--student-epochs", type=int, default=defaults.student_epochs)
    demo.add_argument("--student-width", type=float, default=defaults.student_width)
    demo.add_argument("--student-batch-size", type=int, default=defaults.student_batch_size)
    demo.add_argument("--held-out", type=int, default=defaults.held_out, help="natural images never queried")
    demo.add_argument(
        "--victim",
        default=defaults.victim_dir,
        help="the victim: a folder saved by `train-victim` (result.json and model/); default: the committed "
        "CIFAR-10 VGG16-SDN; a missing or damaged one falls back to training",
    )
    demo.add_argument("--train-victim", action="store_true", help="train the victim here (a shorter run)")
    demo.add_argument("--victim-images", type=int, default=defaults.victim_images)
    demo.add_argument("--victim-epochs", type=int, default=defaults.victim_epochs)
    demo.add_argument(
        "--pretrained", default=defaults.pretrained_dir, help="a pre-trained student backbone (default: none)"
    )
    demo.add_argument("--no-pretrained", action="store_true", help="train the student from scratch")
    demo.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs)
    demo.add_argument(
        "--timing",
        choices=("measured", "simulated"),
        default="measured",
        help="measured wall-clock answers (default) or a FLOPs cost model",
    )
    demo.set_defaults(func=_cmd_demo)


def _train_victim_command(commands, debug, common, quiet) -> None:
    """Train, threshold, evaluate and save a victim."""
    tv = commands.add_parser(
        "train-victim",
        parents=[debug, common, quiet],
        help="train a multi-exit victim (SDN recipe), choose its thresholds, evaluate and save it",
        description="Train an SDN multi-exit victim. Writes OUT/result.json (test accuracy per exit, "
        "accuracy and mean FLOPs under the thresholds, exit histogram, minutes), OUT/model (Orbax "
        "checkpoint with thresholds), OUT/exits.png and OUT/run (metrics.jsonl and resumable checkpoints).",
    )
    tv.add_argument("--arch", default="vgg16", choices=["vgg16", "resnet56", "mobilenet"])
    tv.add_argument(
        "--dataset", default="cifar10", help="a mexjax.data name, e.g. cifar10, fashion_mnist, gtsrb"
    )
    tv.add_argument("--exits", type=int, default=7, help="number of exits K, final head included (2-7)")
    tv.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier (0.25 for CPU-sized victims)"
    )
    tv.add_argument("--epochs", type=int, default=100, help="epochs (lr x0.1 at 35%%, 60%%, 85%% of them)")
    tv.add_argument("--batch-size", type=int, default=128)
    tv.add_argument("--lr", type=_non_negative, default=None, help="initial learning rate (default 0.1)")
    tv.add_argument(
        "--weight-decay", type=_non_negative, default=None, help="default 5e-4 (VGG16) / 1e-4; 0: none"
    )
    tv.add_argument(
        "--recipe",
        choices=("sdn", "adam"),
        default="sdn",
        help="sdn: SGD with SDN's exit weights (default); adam: Adam, all exits alike (e.g. pre-training)",
    )
    tv.add_argument("--bf16", action="store_true", help="compute in bfloat16 (parameters stay float32)")
    tv.add_argument("--held-out", type=int, default=5000, help="training images kept to choose thresholds")
    tv.add_argument("--train-subset", type=int, default=None, help="train on this many images only")
    tv.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="train on square inputs of this side (resized), e.g. 32: a student for 32x32 victims",
    )
    tv.add_argument("--max-drop", type=float, default=0.02, help="SDN rule: accuracy drop allowed (fraction)")
    tv.add_argument(
        "--threshold", type=float, default=None, help="a global threshold instead of choosing one"
    )
    tv.add_argument("--thresholds", default=None, help="per-exit thresholds, comma-separated (K-1 values)")
    tv.add_argument("--out", required=True, help="output folder (a rerun resumes its training)")
    tv.set_defaults(func=_cmd_train_victim)


def _slowdown_command(commands, debug, common, quiet) -> None:
    """DeepSloth against a saved victim."""
    sd = commands.add_parser(
        "slowdown",
        parents=[debug, common, quiet],
        help="DeepSloth against a saved multi-exit victim: accuracy and efficacy before and after",
        description="Attack test images of a saved victim (white box; pass a stolen or other surrogate "
        "model as --checkpoint and evaluate its images on the victim for a black-box attack). Writes "
        "OUT/result.json, OUT/adversarial.npy (float32 in [0, 1]) and OUT/efficacy.png.",
    )
    sd.add_argument("--checkpoint", required=True, help="a model saved by train-victim (its model/ folder)")
    sd.add_argument("--dataset", default="cifar10")
    sd.add_argument("--split", default="test")
    sd.add_argument("--images", type=int, default=1000, help="test images to attack")
    sd.add_argument("--norm", default="linf", choices=["linf", "l2", "universal"])
    sd.add_argument("--eps", type=float, default=8 / 255, help="perturbation bound (default 8/255)")
    sd.add_argument("--step", type=float, default=2 / 255, help="step size (default 2/255)")
    sd.add_argument("--steps", type=int, default=30, help="PGD steps (universal: epochs)")
    sd.add_argument("--defense", default="none", choices=["none", "jpeg90", "jpeg75", "smooth"])
    sd.add_argument("--out", default="outputs/slowdown")
    sd.set_defaults(func=_cmd_slowdown)


def _serve_command(commands, debug) -> None:
    """A saved victim over HTTP."""
    sv = commands.add_parser(
        "serve",
        parents=[debug],
        help="serve a saved victim over HTTP (real early exit per request, per-client budgets)",
        description="Serve a model saved by train-victim. POST /v1/predict with an X-Client-Id header and "
        "a body of Content-Type application/x-npy (a .npy array u8[N,H,W,C] or f32 in [0,1]) or one "
        'image/png or image/jpeg image; answers {"probabilities": [[...]]} or {"labels": [...]}. '
        "GET /health, GET /v1/budget. The exit index is never returned.",
    )
    sv.add_argument("--checkpoint", required=True, help="a model saved by train-victim (its model/ folder)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    sv.add_argument("--port", type=int, default=8000, help="0: any free port (printed once listening)")
    sv.add_argument("--budget", type=int, default=10_000, help="queries (images) each client may send")
    sv.add_argument("--output", default="probs", choices=["probs", "labels"])
    sv.add_argument("--max-batch", type=int, default=64, help="images per request")
    sv.add_argument("--max-body-bytes", type=int, default=4 * 2**20)
    sv.add_argument("--read-timeout", type=float, default=30.0, help="seconds to send a body (then 408)")
    sv.add_argument("--max-clients", type=int, default=100_000, help="client budgets kept (then 503)")
    sv.add_argument(
        "--countermeasure", default="none", choices=["none", "constant", "uniform", "exponential", "batch"]
    )
    sv.add_argument("--delay", type=float, default=0.0, help="uniform: maximum, exponential: mean (s)")
    sv.add_argument("--window", type=float, default=0.0, help="batch: slot length (s)")
    sv.add_argument(
        "--full-time", type=float, default=None, help="constant: pad per image (s; default measured)"
    )
    sv.add_argument("--seed", type=int, default=0, help="of the random delays")
    sv.set_defaults(func=_cmd_serve)


def _data_command(commands, debug, data_dir) -> None:
    """Decode, cache and describe datasets."""
    info = commands.add_parser(
        "data", parents=[debug, data_dir], help="load datasets (decoding and caching them) and describe them"
    )
    info.add_argument("names", nargs="*", help="dataset names (default: all known)")
    info.set_defaults(func=_cmd_data)


def _is_user_error(err: BaseException) -> bool:
    """Errors in what was asked (bad values, missing files, unknown datasets, a damaged checkpoint, a
    spent budget, ...): the builtin ValueError / OSError / NotImplementedError and every exception type
    of mexjax itself. Anything else is a bug and keeps its traceback."""
    if isinstance(err, ValueError | OSError | NotImplementedError):
        return True
    return any(cls.__module__.startswith("mexjax.") for cls in type(err).__mro__)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0: done, 1: an error reported on one line)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("mexjax: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        print(f"mexjax: error: {_one_line(err)} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
