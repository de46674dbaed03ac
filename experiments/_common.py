"""Pieces the experiment runners share: their scale configs, the stamp on every record, the cells a
rerun skips, cached intermediate arrays and the Markdown beside a results file."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from mexjax.results import machine_description, read_records


def pick_scale(scales: dict, name: str):
    """scales[name] (a runner's frozen config of that scale), or an error that names the scales."""
    if name not in scales:
        raise ValueError(f"unknown scale {name!r}: this runner has {', '.join(scales)}")
    return scales[name]


def stamp() -> dict:
    """Where and when a record was made: merged into every record a runner appends."""
    return {"machine": machine_description(), "date": time.strftime("%Y-%m-%d")}


def finished(
    path: Path, key: Callable[[dict], Hashable], where: Callable[[dict], bool] = lambda r: True
) -> set:
    """The keys of the cells already recorded in the JSON-lines `path` (a rerun skips them)."""
    return {key(r) for r in read_records(path) if where(r)}


def machines(records: list[dict]) -> str:
    """The machines the records were made on, for a table's header."""
    return "; ".join(sorted({r["machine"] for r in records})) or "-"


def cached_array(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    """np.load(path) when it exists, else make() saved there first (a rerun skips the expensive part,
    e.g. adversarial images)."""
    path = Path(path)
    if path.exists():
        return np.load(path)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def publish_markdown(results: Path, markdown: str) -> Path:
    """Write `markdown` beside the JSON-lines `results` (same name, .md) and print it."""
    path = Path(results).with_suffix(".md")
    path.write_text(markdown)
    print(markdown)
    return path
