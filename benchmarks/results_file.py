"""Where a benchmark script writes its figures: one JSON per script, machine and day."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path


def write(kind: str, machine: str, out: str | Path | None = None, **fields) -> Path:
    """Write {"machine", "date", **fields} to `out`, by default
    benchmarks/results/<kind>-<host>-<date>.json (the file docs/benchmarks.md cites); returns the path."""
    today = str(datetime.date.today())
    path = Path(out or Path(__file__).resolve().parent / "results" / f"{kind}-{platform.node()}-{today}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "date": today, **fields}, indent=1))
    print(f"wrote {path}")
    return path
