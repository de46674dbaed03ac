"""Where datasets are looked for, and where decoded arrays are cached.

Lookup order for the data directory: the `data_dir` argument, then $MEXJAX_DATA_DIR, then `data/`
in the repository, then `../shared/data` beside the repository. An explicit `data_dir` that does not
exist is an error, never silently replaced by another place.
"""

from __future__ import annotations

import os
from pathlib import Path

from mexjax.data._dataset import DatasetNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[2]
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for a dataset, in order (only those that exist).

    Raises DatasetNotFoundError if `data_dir` (or $MEXJAX_DATA_DIR) is given but is not a directory.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(
                f"data_dir={str(data_dir)!r} is not a directory. Pass the folder that holds the "
                "dataset archives (e.g. ../shared/data), or leave data_dir unset to search "
                "$MEXJAX_DATA_DIR, data/ and ../shared/data."
            )
        return [path]
    dirs = []
    env = os.environ.get("MEXJAX_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(
                f"MEXJAX_DATA_DIR={env!r} is not a directory: point it at the folder that holds "
                "the dataset archives, or unset it."
            )
        dirs.append(path)
    for path in (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"):
        if path.is_dir() and path not in dirs:
            dirs.append(path)
    return dirs


def searched_places(data_dir=None) -> list[str]:
    """Human-readable list of the places `data_dirs` considers (for error messages)."""
    if data_dir is not None:
        return [str(data_dir)]
    places = []
    if os.environ.get("MEXJAX_DATA_DIR"):
        places.append(f"$MEXJAX_DATA_DIR={os.environ['MEXJAX_DATA_DIR']}")
    places += [str(REPO_ROOT / "data"), str(REPO_ROOT.parent / "shared" / "data")]
    return places


def cache_dir() -> Path:
    """Root of the decoded-array cache: $MEXJAX_CACHE_DIR, else ~/.cache/mexjax."""
    env = os.environ.get("MEXJAX_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "mexjax"
    return root
