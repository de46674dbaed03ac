"""Pieces the experiment runners share: cached intermediate arrays and the Markdown beside a results file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


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
