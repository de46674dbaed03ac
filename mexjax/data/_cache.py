"""Decode-once cache: arrays stored as `.npy` beside a `meta.json`, keyed by the source checksum.

An entry is `<cache_dir>/<name>-<key16>/` with `<split>.images.npy`, `<split>.labels.npy` and
`meta.json` (class names, shapes and the sha256 of every `.npy`). Reading verifies those checksums
and shapes; a bad entry is reported with a warning and rebuilt by the caller, never used. Writing
goes through a temporary folder renamed into place, so an interrupted write leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from mexjax.data._locate import cache_dir

FORMAT_VERSION = 2  # 2: entries are written only after the completeness checks of the loaders
_CHUNK = 1 << 22


class CacheRebuildWarning(UserWarning):
    """A cache entry failed verification and is being rebuilt from its source."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_fingerprint(files: list[Path], root: Path) -> str:
    """A key for an extracted folder: sha256 over every file's relative path, size and mtime."""
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def entry_path(name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir() / f"{safe}-{key[:16]}"


def read_meta(entry: Path, key: str) -> dict | None:
    """The entry's metadata if the entry exists and belongs to `key`; None if absent or bad."""
    meta_file = entry / "meta.json"
    if not entry.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        ok = meta.get("format") == FORMAT_VERSION and meta.get("source_key") == key
    except (OSError, ValueError) as err:
        return _bad(entry, f"unreadable meta.json ({err})")
    if not ok:
        return _bad(entry, "meta.json is from another source or format")
    return meta


def read_split(entry: Path, meta: dict, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Memory-mapped (images, labels) of a split after verifying checksums; None if bad."""
    info = meta["splits"][split]
    arrays = []
    for part in ("images", "labels"):
        file = entry / f"{split}.{part}.npy"
        try:
            if file_sha256(file) != info[f"{part}_sha256"]:
                return _bad(entry, f"{file.name} fails its checksum (corrupt or truncated)")
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError) as err:
            return _bad(entry, f"{file.name} is unreadable ({err})")
        if list(array.shape) != info[f"{part}_shape"]:
            return _bad(entry, f"{file.name} has shape {array.shape}, expected {info[part + '_shape']}")
        arrays.append(array)
    return arrays[0], arrays[1]


def write(entry: Path, key: str, source: str, class_names, splits: dict) -> None:
    """Write a complete entry atomically (temporary folder, then rename)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {
        "format": FORMAT_VERSION,
        "source": source,
        "source_key": key,
        "class_names": list(class_names),
        "splits": {},
    }
    for split, (images, labels) in splits.items():
        info = {}
        for part, array in (("images", images), ("labels", labels)):
            file = tmp / f"{split}.{part}.npy"
            np.save(file, np.ascontiguousarray(array), allow_pickle=False)
            info[f"{part}_sha256"] = file_sha256(file)
            info[f"{part}_shape"] = list(array.shape)
        meta["splits"][split] = info
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(tmp, entry)


def _bad(entry: Path, why: str) -> None:
    warnings.warn(
        f"cache entry {entry} is bad: {why}; rebuilding it from the source.",
        CacheRebuildWarning,
        stacklevel=3,
    )
    return None
