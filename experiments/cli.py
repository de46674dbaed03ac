"""The command-line options every experiment runner shares (scale, where results and outputs go)."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def runner_parser(doc: str, scales) -> argparse.ArgumentParser:
    """A parser with --scale (default cpu), --results, --outputs, --data-dir and --quiet."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(scales), default="cpu")
    parser.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    parser.add_argument("--outputs", default=str(ROOT / "outputs" / "experiments"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser
