"""Decoding image folders laid out as `<split>/<class>/<image>`, extracted or inside a tar archive.

This module only decodes; caching and checksums live in `_cache`. Grayscale images become one
channel unless any image of the folder has colour (or `channels=3` is asked), in which case every
image is converted to RGB. Images of different sizes are an error: a dataset has one image shape.
A class folder without images is an error (dropping it would shift the labels of later classes), and
so is a tar archive that stops without its end-of-archive block (a copy cut between two members).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mexjax.data._dataset import CorruptDataError, DataError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)
_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "F"})


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes -> uint8[H, W, 1] (grayscale) or uint8[H, W, 3]."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in _GRAY_MODES:
                return np.asarray(image.convert("L"))[..., None]
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptDataError(
            f"cannot decode image {where}: {err}. Remove or replace the file, then load again."
        ) from err


class _Collector:
    """Accumulates decoded images per split, then stacks them into arrays."""

    def __init__(self, source: str):
        self.source = source
        self.records: dict[str, list[tuple[str, str, np.ndarray]]] = {}
        self.first_of_size: dict[tuple[int, int], str] = {}
        self.folders: dict[tuple[str, ...], str] = {}  # every folder seen: path parts -> where
        self.filled: set[tuple[str, ...]] = set()  # the folders that hold an image
        self.readme = False  # a README.txt at the top, as the published archives carry

    def add_folder(self, parts: tuple[str, ...], where: str):
        if not any(p.startswith(".") for p in parts):
            self.folders[parts] = where

    def add(self, split: str, cls: str, where: str, image: np.ndarray, folder: tuple[str, ...] = ()):
        self.filled.add(folder)
        size = image.shape[:2]
        if size not in self.first_of_size:
            self.first_of_size[size] = where
            if len(self.first_of_size) > 1:
                (s0, w0), (s1, w1) = list(self.first_of_size.items())[:2]
                raise DataError(
                    f"image folder {self.source} mixes image sizes: {w0} is {s0[0]}x{s0[1]} but "
                    f"{w1} is {s1[0]}x{s1[1]}. Resize every image to one size before loading "
                    "(mexjax.data.resize can do it after loading each size separately)."
                )
        self.records.setdefault(split, []).append((cls, where, image))

    def finish(self, channels: int | None) -> tuple[tuple[str, ...], dict, bool]:
        if not self.records:
            raise DataError(
                f"no images found in {self.source}. An image folder is laid out as "
                f"<split>/<class>/<image> with images ending in {sorted(IMAGE_SUFFIXES)}."
            )
        self._check_no_empty_class()
        class_names = tuple(sorted({cls for recs in self.records.values() for cls, _, _ in recs}))
        index = {cls: i for i, cls in enumerate(class_names)}
        any_colour = any(im.shape[-1] == 3 for recs in self.records.values() for *_, im in recs)
        channels = channels or (3 if any_colour else 1)
        splits = {}
        for split, recs in self.records.items():
            recs.sort(key=lambda r: (r[0], r[1]))
            images = np.stack([_to_channels(im, channels) for *_, im in recs])
            labels = np.array([index[cls] for cls, _, _ in recs], dtype=np.int32)
            splits[split] = (images, labels)
        return class_names, splits, self.readme

    def _check_no_empty_class(self):
        """A folder inside a split folder (one that holds class folders with images) is a class folder;
        an empty one is an error, as dropping it would give every later class another label."""
        split_folders = {folder[:-1] for folder in self.filled}
        empty = sorted(
            where
            for parts, where in self.folders.items()
            if parts[:-1] in split_folders and parts not in self.filled
        )
        if empty:
            raise DataError(
                f"class folder {empty[0]} holds no images"
                + (f" (nor do {len(empty) - 1} other class folders)" if len(empty) > 1 else "")
                + f" in {self.source}. Skipping it would shift the label of every later class: put its "
                "images back (an interrupted copy or extraction?), or delete the folder if that class "
                "is not part of the dataset."
            )


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.round(image.astype(np.float32) @ weights)[..., None].astype(np.uint8)


def _split_and_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) of an image path `[top/]split/class/file`, or None if not an image there."""
    if len(parts) not in (3, 4) or any(p.startswith(".") for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return parts[-3], parts[-2]


class _ProgressReader(io.RawIOBase):
    """A file wrapper that advances a tqdm bar by the compressed bytes read."""

    def __init__(self, raw, bar):
        self.raw, self.bar = raw, bar

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.raw.readinto(buffer)
        self.bar.update(n or 0)
        return n


class _TailReader(io.RawIOBase):
    """Passes a stream through, counting its bytes and keeping the latest ones, so that the bytes at
    the offset where tarfile stopped can be looked at after it stopped."""

    def __init__(self, raw, keep: int = 1 << 16):
        self.raw, self.keep, self.pos, self.tail = raw, keep, 0, bytearray()

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.raw.readinto(buffer) or 0
        self.pos += n
        self.tail += memoryview(buffer)[:n]
        if len(self.tail) > 2 * self.keep:
            del self.tail[: -self.keep]
        return n

    def bytes_at(self, offset: int, size: int) -> bytes | None:
        """The `size` bytes at `offset` (fewer where the stream ends first; None if already dropped)."""
        chunk = bytearray(size)
        while self.pos < offset + size and self.readinto(chunk):
            pass
        start = offset - (self.pos - len(self.tail))
        return None if start < 0 else bytes(self.tail[start : start + size])

    def drain(self):
        """Read to the end (a gzip stream checks its length and CRC there)."""
        chunk = bytearray(1 << 16)
        while self.readinto(chunk):
            del self.tail[:]


def read_archive(path: Path, *, channels: int | None = None, progress: bool = True):
    """Decode every split of a tar(.gz) image folder.

    Returns (class_names, {split: (x, y)}, whether a README.txt is at the top)."""
    collector = _Collector(str(path))
    gzipped = path.name.endswith(("gz", "tgz"))
    desc = f"decoding {path.name}"
    with (
        open(path, "rb", buffering=0) as raw,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar,
    ):
        try:
            compressed = io.BufferedReader(_ProgressReader(raw, bar))
            stream = _TailReader(gzip.GzipFile(fileobj=compressed, mode="rb") if gzipped else compressed)
            last = None
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for member in tf:
                    last = member.name
                    parts = PurePosixPath(member.name).parts
                    if member.isfile() and len(parts) <= 2 and parts[-1] == "README.txt":
                        collector.readme = True
                    if member.isdir():
                        collector.add_folder(parts, f"{path.name}:{member.name.rstrip('/')}")
                    where = _split_and_class(parts)
                    if not member.isfile() or where is None:
                        continue
                    data = tf.extractfile(member).read()
                    image = decode_image(data, member.name)
                    collector.add(*where, f"{path.name}:{member.name}", image, folder=parts[:-1])
                end = tf.offset  # where tarfile stopped: the end-of-archive block must be there
            marker = stream.bytes_at(end, tarfile.BLOCKSIZE)
            stream.drain()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise CorruptDataError(
                f"archive {path} is truncated or corrupt ({type(err).__name__}: {err}). "
                "Copy it again and compare its sha256 with the SHA256SUMS beside it."
            ) from err
    if marker != bytes(tarfile.BLOCKSIZE):
        raise CorruptDataError(
            f"archive {path} stops after the member {last} without a tar end-of-archive block: the "
            "copy was cut short (or has garbage at that point), so later images or whole splits are "
            "missing. Copy it again and compare its sha256 with the SHA256SUMS beside it."
        )
    return collector.finish(channels)


def read_folder(root: Path, *, channels: int | None = None, progress: bool = True):
    """Decode every split of an extracted image folder.

    Returns (class_names, {split: (x, y)}, whether a README.txt is at the top)."""
    collector = _Collector(str(root))
    collector.readme = (root / "README.txt").is_file()
    for folder in sorted(root.glob("*/*")):
        if folder.is_dir():
            collector.add_folder(folder.relative_to(root).parts, str(folder))
    files = image_files(root)
    for file in tqdm(files, desc=f"decoding {root.name}", unit="img", disable=not progress):
        parts = file.relative_to(root).parts
        image = decode_image(file.read_bytes(), str(file))
        collector.add(parts[0], parts[1], str(file), image, folder=parts[:-1])
    return collector.finish(channels)


def image_files(root: Path) -> list[Path]:
    """Every image file at `root/<split>/<class>/<file>`, sorted."""
    files = []
    for file in sorted(root.glob("*/*/*")):
        rel = file.relative_to(root).parts
        if file.is_file() and _split_and_class(rel) is not None:
            files.append(file)
    return files
