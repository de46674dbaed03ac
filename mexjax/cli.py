"""Command line: `python -m mexjax <command>`. Each command is a thin wrapper over library calls."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _cmd_data(args) -> int:
    from mexjax import data

    names = args.names or list(data.NAMES)
    for name in names:
        for split in _splits(name):
            try:
                t0 = time.perf_counter()
                ds = data.load(name, split, data_dir=args.data_dir)
                print(f"{ds!r}  loaded in {time.perf_counter() - t0:.2f}s")
            except data.DataError as err:
                print(f"{name}/{split}: not available: {err}")
    return 0


def _splits(name: str) -> tuple[str, ...]:
    from mexjax.data import _load

    return {**{k: v.splits for k, v in _load.ARCHIVES.items()}, **_load.FORMAT_SPLITS}.get(name, ("train",))


def _cmd_demo(args) -> int:
    from mexjax import demo

    summary = demo.run(out_dir=Path(args.out), data_dir=args.data_dir, seed=args.seed)
    print(f"{'dataset':<22}{'images':>8}  {'shape':<14}{'classes':>8}{'load s':>9}")
    for name, info in summary["datasets"].items():
        shape = "x".join(map(str, info["shape"]))
        print(f"{name:<22}{info['images']:>8}  {shape:<14}{info['classes']:>8}{info['load_seconds']:>9.2f}")
    for name in summary["skipped"]:
        print(f"{name:<22}  (not available: see summary.json)")
    print(f"figure: {summary['figure']}\nsummary: {Path(args.out) / 'summary.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mexjax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="CPU-sized demo of what mexjax does (the README's main job)")
    demo.add_argument("--out", default="outputs/demo", help="folder for the demo's figures and summary")
    demo.add_argument("--data-dir", default=None, help="folder with the dataset archives")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    info = commands.add_parser("data", help="load datasets (decoding and caching them) and describe them")
    info.add_argument("names", nargs="*", help="dataset names (default: all known)")
    info.add_argument("--data-dir", default=None)
    info.set_defaults(func=_cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
