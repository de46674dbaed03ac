"""Benchmark: loading CIFAR-10 train from the decode-once cache vs decoding the archive.

Target (issue: data layer): the second load of CIFAR-10 train under 2 s on a 2-core CPU machine.
Reference: the first load of the same archive (stream, decode 60,000 JPEGs, write the cache).

    .venv/bin/python benchmarks/bench_data_load.py [--name cifar10] [--split train] [--repeats 5]

Prints one Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="cifar10")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    old_cache = os.environ.get("MEXJAX_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEXJAX_CACHE_DIR"] = cache  # a cold cache: the first load decodes
        from mexjax import data

        start = time.perf_counter()
        data.load(args.name, args.split, progress=False)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ds = data.load(args.name, args.split, progress=False)
            _ = int(ds.images[-1].sum())  # touch the memory map
            warm.append(time.perf_counter() - start)
    if old_cache is None:
        os.environ.pop("MEXJAX_CACHE_DIR", None)
    else:
        os.environ["MEXJAX_CACHE_DIR"] = old_cache
    warm_s = statistics.median(warm)
    machine = f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}"
    print(
        f"| {args.name} {args.split} load, cached (median of {args.repeats}) vs first decode | {machine} | "
        f"{datetime.date.today()} | `python benchmarks/bench_data_load.py` | {warm_s:.3f} s | "
        f"{cold:.2f} s | {cold / warm_s:.0f}x faster |"
    )
    return {"images": len(ds), "cached_s": warm_s, "first_s": cold}


if __name__ == "__main__":
    main()
