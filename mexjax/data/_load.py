"""`load(name, split)`: one entry point for every dataset mexjax knows, and for image folders."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from mexjax.data import _cache, _formats, _imagefolder
from mexjax.data._dataset import CorruptDataError, DataError, Dataset, DatasetNotFoundError
from mexjax.data._locate import FASHION_MNIST_SYSTEM_DIR, data_dirs, searched_places


@dataclasses.dataclass(frozen=True)
class _ArchiveSpec:
    stem: str  # archive `<stem>.tar.gz` or extracted folder `<stem>/`
    sizes: dict[str, int]  # images in each split, as published (checked on copies with the README.txt)
    num_classes: int

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sizes)


ARCHIVES = {
    "cifar10": _ArchiveSpec("cifar10-jpeg75", {"train": 50_000, "test": 10_000}, 10),
    "gtsrb": _ArchiveSpec("gtsrb32", {"train": 39_209, "test": 12_630}, 43),
    "tinyimagenet": _ArchiveSpec("tinyimagenet200-20k", {"train": 20_000, "val": 10_000}, 200),
}
REQUIRE_CHECKSUMS_ENV = "MEXJAX_REQUIRE_CHECKSUMS"


class MissingChecksumWarning(UserWarning):
    """An archive is loaded although no SHA256SUMS beside it lists it, so it cannot be verified."""


FORMAT_SPLITS = {
    "fashion_mnist": ("train", "test"),
    "cifar100": ("train", "test"),
    "svhn": ("train", "test", "extra"),
}
NAMES = (*ARCHIVES, *FORMAT_SPLITS)


def splits_of(name: str) -> tuple[str, ...]:
    """The splits a named dataset has (("train",) for a name mexjax does not know)."""
    return {**{k: v.splits for k, v in ARCHIVES.items()}, **FORMAT_SPLITS}.get(name, ("train",))


_ALIASES = {n.replace("_", ""): n for n in NAMES}


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Dataset:
    """Load a split of a dataset as uint8 NHWC images with int32 labels.

    Args:
      name: one of `NAMES` ("cifar10", "gtsrb", "tinyimagenet", "fashion_mnist", "cifar100",
        "svhn"; case, "-" and "_" ignored), a path to an image folder `<split>/<class>/<image>`
        (extracted or a .tar/.tar.gz), or `"tfds:<name>"` / any other name for a prepared
        tensorflow-datasets dataset when tensorflow-datasets is installed.
      split: e.g. "train", "test" ("val" for tinyimagenet, "extra" for svhn).
      data_dir: where to look; default: $MEXJAX_DATA_DIR, data/ in the repo, ../shared/data.
      progress: show a progress bar while decoding an archive the first time.

    Archives and image folders are decoded once and cached (see `mexjax.data._cache`), later loads
    memory-map the cache. Grayscale images of the named colour datasets are converted to RGB.
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(f"dataset name must be a string or path, got {type(name).__name__}")
    if not isinstance(split, str):
        raise TypeError(f"split must be a string such as 'train', got {type(split).__name__}")
    key = str(name).lower().replace("-", "").replace("_", "")
    canonical = _ALIASES.get(key)
    if canonical in ARCHIVES:
        spec = ARCHIVES[canonical]
        _check_split(canonical, split, spec.splits)
        path = _find_archive(canonical, spec, data_dir)
        return _load_image_folder(path, split, name=canonical, channels=3, progress=progress, spec=spec)
    if canonical in FORMAT_SPLITS:
        _check_split(canonical, split, FORMAT_SPLITS[canonical])
        return _FORMAT_LOADERS[canonical](split, data_dir)
    if str(name).startswith("tfds:"):
        from mexjax.data import _tfds

        return _tfds.load(str(name)[5:], split, data_dir=data_dir)
    path = Path(name).expanduser()
    if path.is_dir() or _imagefolder.is_archive(path):
        return _load_image_folder(path, split, name=path.name, channels=None, progress=progress)
    from mexjax.data import _tfds

    if _tfds.available():
        return _tfds.load(str(name), split, data_dir=data_dir)
    raise DataError(
        f"unknown dataset {str(name)!r}. Known names: {', '.join(NAMES)}; or pass the path of an "
        "image folder laid out as <split>/<class>/<image> (a folder or .tar.gz); prepared "
        "tensorflow-datasets datasets need `pip install 'mexjax[tfds]'`."
    )


def _check_split(name: str, split: str, splits: tuple[str, ...]):
    if split not in splits:
        raise DataError(f"{name} has no split {split!r}; its splits are {', '.join(splits)}")


def _find_archive(name: str, spec: _ArchiveSpec, data_dir) -> Path:
    for folder in data_dirs(data_dir):
        for candidate in (folder / f"{spec.stem}.tar.gz", folder / spec.stem):
            if candidate.exists():
                return candidate
    raise DatasetNotFoundError(
        f"{name}: neither {spec.stem}.tar.gz nor an extracted {spec.stem}/ folder was found in "
        f"{'; '.join(searched_places(data_dir))}. Put the archive in one of them (this project "
        "keeps it in ../shared/data beside the repository) or set MEXJAX_DATA_DIR."
    )


def _expected_sha256(archive: Path) -> str | None:
    """The archive's checksum from a SHA256SUMS file beside it, if listed there."""
    sums = archive.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == archive.name:
            return parts[0].lower()
    return None


def _check_archive_sum(archive: Path) -> str:
    """The archive's sha256, checked against its SHA256SUMS entry (a missing entry: `_check_listed`)."""
    expected = _check_listed(archive, stacklevel=5)
    key = _cache.file_sha256(archive)
    if expected is not None and expected != key:
        raise CorruptDataError(
            f"{archive} has sha256 {key} but SHA256SUMS beside it says {expected}: the archive is "
            "corrupt or truncated. Copy it again."
        )
    return key


def _check_listed(archive: Path, stacklevel: int = 4) -> str | None:
    """The archive's checksum from SHA256SUMS; a missing entry warns, or fails under
    MEXJAX_REQUIRE_CHECKSUMS=1."""
    expected = _expected_sha256(archive)
    if expected is not None:
        return expected
    sums = archive.parent / "SHA256SUMS"
    what = f"{archive} has no entry in {sums}" if sums.is_file() else f"{archive} has no SHA256SUMS beside it"
    how = (
        f"once you know the copy is complete, add its checksum with `cd {archive.parent} && "
        f"sha256sum {archive.name} >> SHA256SUMS`"
    )
    if os.environ.get(REQUIRE_CHECKSUMS_ENV) == "1":
        raise DataError(
            f"{what}, and {REQUIRE_CHECKSUMS_ENV}=1 requires every archive to be listed: {how}, or "
            f"unset {REQUIRE_CHECKSUMS_ENV}."
        )
    warnings.warn(
        f"{what}, so it cannot be checked for corruption or truncation: {how} (it is then verified on "
        f"every load; {REQUIRE_CHECKSUMS_ENV}=1 makes a missing entry an error).",
        MissingChecksumWarning,
        stacklevel=stacklevel,
    )
    return None


def _check_complete(path: Path, name: str, spec: _ArchiveSpec, class_names, counts: dict[str, int]):
    """A published copy of a named dataset (its README.txt is at the top) must hold every split with the
    published number of images and classes. Small stand-ins in the same layout carry no README.txt."""
    fix = "Copy it (or extract it) again from a complete archive, checked against its SHA256SUMS line."
    what = f"{path} carries the README.txt of the published {name} but is incomplete"
    for split, size in spec.sizes.items():
        if split not in counts:
            raise CorruptDataError(
                f"{what}: the split {split!r} is missing (it holds {', '.join(counts) or 'no split'}). {fix}"
            )
        if counts[split] != size:
            raise CorruptDataError(
                f"{what}: its {split} split holds {counts[split]} images but {name} has {size}. {fix}"
            )
    if len(class_names) != spec.num_classes:
        raise CorruptDataError(
            f"{what}: it holds {len(class_names)} classes but {name} has {spec.num_classes}. {fix}"
        )


def _load_image_folder(path: Path, split: str, *, name: str, channels, progress, spec=None) -> Dataset:
    if path.is_dir():
        files = _imagefolder.image_files(path)
        if not files:
            raise DataError(
                f"image folder {path} holds no images at <split>/<class>/<image> (looked for files "
                f"ending in {', '.join(sorted(_imagefolder.IMAGE_SUFFIXES))})."
            )
        readme = [path / "README.txt"] if (path / "README.txt").is_file() else []  # it decides the checks
        key = _cache.folder_fingerprint(files + readme, path)
    else:
        key = _check_archive_sum(path)
    entry = _cache.entry_path(name, key)
    meta = _cache.read_meta(entry, key)
    if meta is not None:  # entries are written only after the checks below
        if split not in meta["splits"]:
            raise DataError(f"{path} has no split {split!r}; its splits are {', '.join(meta['splits'])}")
        arrays = _cache.read_split(entry, meta, split)
        if arrays is not None:
            return Dataset(*arrays, class_names=tuple(meta["class_names"]), name=name, split=split)

    reader = _imagefolder.read_folder if path.is_dir() else _imagefolder.read_archive
    class_names, splits, has_readme = reader(path, channels=channels, progress=progress)
    if spec is not None and has_readme:  # before caching: an incomplete dataset is never cached
        _check_complete(path, name, spec, class_names, {s: len(y) for s, (_, y) in splits.items()})
    if split not in splits:
        raise DataError(f"{path} has no split {split!r}; its splits are {', '.join(splits)}")
    try:
        _cache.write(entry, key, str(path), class_names, splits)
    except OSError as err:
        warnings.warn(
            f"could not write the cache {entry} ({err}); set MEXJAX_CACHE_DIR to a writable "
            "folder to avoid decoding again next time.",
            stacklevel=2,
        )
        return Dataset(*splits[split], class_names=class_names, name=name, split=split)
    meta = _cache.read_meta(entry, key)
    arrays = _cache.read_split(entry, meta, split) if meta else None
    if arrays is None:  # the just-written cache cannot be read back: use the decoded arrays
        arrays = splits[split]
    return Dataset(*arrays, class_names=class_names, name=name, split=split)


def _load_fashion_mnist(split: str, data_dir) -> Dataset:
    candidates = []
    for folder in data_dirs(data_dir):
        candidates += [folder / "fashion-mnist", folder / "fashion_mnist", folder]
    if data_dir is None:
        candidates.append(FASHION_MNIST_SYSTEM_DIR)
    images_stem = _formats.FASHION_MNIST_FILES[split][0]
    for folder in candidates:
        if (folder / f"{images_stem}.gz").exists() or (folder / images_stem).exists():
            images, labels = _formats.read_fashion_mnist(folder, split)
            return Dataset(images, labels, _formats.FASHION_MNIST_CLASSES, "fashion_mnist", split)
    raise DatasetNotFoundError(
        f"fashion_mnist: {images_stem}.gz not found in {'; '.join(map(str, candidates))}. "
        "Install the Debian package (apt-get install -y dataset-fashion-mnist; the README's "
        "commands do it) or put the official idx files in a fashion-mnist/ folder of the data dir."
    )


def _load_cifar100(split: str, data_dir) -> Dataset:
    candidates = []
    for folder in data_dirs(data_dir):
        candidates += [folder / "cifar-100-python", folder / "cifar-100-python.tar.gz"]
    for source in candidates:
        if source.exists():
            if source.is_file():  # the archive: checked against SHA256SUMS as the shared archives are
                _check_archive_sum(source)
            images, labels, names = _formats.read_cifar100(source, split)
            return Dataset(images, labels, names, "cifar100", split)
    raise DatasetNotFoundError(
        f"cifar100: none of {'; '.join(map(str, candidates)) or 'no data dir'} exists. CIFAR-100 "
        "is not shipped offline: download cifar-100-python.tar.gz (the official python version) "
        "into the data dir, or use `load('tfds:cifar100', ...)` with tensorflow-datasets."
    )


def _load_svhn(split: str, data_dir) -> Dataset:
    candidates = []
    for folder in data_dirs(data_dir):
        candidates += [folder / "svhn" / f"{split}_32x32.mat", folder / f"{split}_32x32.mat"]
    for source in candidates:
        if source.is_file():
            images, labels = _formats.read_svhn(source)
            return Dataset(images, labels, tuple(str(d) for d in range(10)), "svhn", split)
    raise DatasetNotFoundError(
        f"svhn: none of {'; '.join(map(str, candidates)) or 'no data dir'} exists. SVHN is not "
        f"shipped offline: download the official {split}_32x32.mat into <data dir>/svhn/, or use "
        "`load('tfds:svhn_cropped', ...)` with tensorflow-datasets."
    )


_FORMAT_LOADERS = {
    "fashion_mnist": _load_fashion_mnist,
    "cifar100": _load_cifar100,
    "svhn": _load_svhn,
}
