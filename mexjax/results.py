"""Records as JSON lines (experiment results, training metrics): one record per finished cell or epoch,
appended, read back on resume. The one reader of such files in mexjax.

Public API:
  append_record(path, record)         append one record as a JSON line (creating the folder)
  read_records(path, *, is_record=None, strict=False, on_skip=None) -> list[dict]   in file order; a line
                                      cut by an interruption is skipped with a message
  BadRecordLine                       strict reading: a bad line before the last one (a corrupt file)
  machine_description() -> str        architecture, CPU cores, JAX version, devices: stored in every record
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path


class BadRecordLine(ValueError):
    """A line that is not a record, before the file's last line (strict reading)."""

    def __init__(self, path: Path, number: int, line: str):
        super().__init__(f"{path} line {number} is not a record ({line[:60]!r})")
        self.path, self.number, self.line = path, number, line


def read_records(path: Path, *, is_record: Callable[[object], bool] | None = None, strict: bool = False,
                 on_skip: Callable[[int, str], None] | None = None) -> list:  # fmt: skip
    """Every record in `path` ([] when it does not exist), in file order; blank lines are ignored.

    A line that is not JSON (or fails `is_record`) is what an interruption leaves: it is skipped and
    reported (`on_skip(number, line)`, default: a message on stderr). With strict=True only the last
    line may be such a line; an earlier one raises BadRecordLine (the file is corrupt, not cut short)."""
    path = Path(path)
    if not path.exists():
        return []
    numbered = [(i, line) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)]
    numbered = [(i, line) for i, line in numbered if line.strip()]
    records = []
    for number, line in numbered:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record, ok = None, False
        else:
            ok = is_record is None or is_record(record)
        if ok:
            records.append(record)
            continue
        if strict and number != numbered[-1][0]:
            raise BadRecordLine(path, number, line)
        if on_skip is not None:
            on_skip(number, line)
        else:
            print(f"[results] ignoring unreadable line {number} of {path}: {line[:60]!r}", file=sys.stderr)
    return records


def append_record(path: Path, record: dict) -> None:
    """Append one record as a JSON line (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def machine_description() -> str:
    """Where a result was obtained (architecture, CPU cores, JAX version, devices): stored in every
    result record, because a time or a speed means nothing without its machine."""
    import jax  # here, not at the top: reading and writing records needs no accelerator runtime

    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {len(devices)} x {kind}"
    )
