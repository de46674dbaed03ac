"""Experiment results as JSON lines: one record per finished cell, appended, read back on resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_records(path: Path) -> list[dict]:
    """Every record in `path` ([] when it does not exist). A line cut by an interruption is reported
    on stderr and skipped; the rest are kept."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            print(f"[results] ignoring unreadable line {number} of {path}: {err}", file=sys.stderr)
    return records


def append_record(path: Path, record: dict) -> None:
    """Append one record as a JSON line (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
