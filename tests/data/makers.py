"""Writers of small datasets in the official formats, for the loader tests."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, spec: dict, *, size=(8, 8), mode="RGB", suffix=".png", seed=0):
    """spec: {split: {class: count}}. Returns {split: (images, labels)} in the loader's order."""
    rng = np.random.default_rng(seed)
    classes = sorted({c for per_split in spec.values() for c in per_split})
    expected = {}
    for split, per_class in spec.items():
        images, labels = [], []
        for cls in sorted(per_class):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[cls]):
                channels = 1 if mode == "L" else 3
                pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
                image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
                image.save(folder / f"{i:04d}{suffix}")
                images.append(pixels)
                labels.append(classes.index(cls))
        expected[split] = (np.stack(images), np.array(labels, np.int32))
    return expected


def make_archive(folder: Path, archive: Path, *, checksum: bool = True) -> Path:
    """Tar `folder` with its name as the top directory, as the shared archives are (gzipped unless the
    name ends in .tar); with `checksum`, list its sha256 in SHA256SUMS beside it."""
    with tarfile.open(archive, "w" if archive.name.endswith(".tar") else "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    if checksum:
        write_sha256sums(archive)
    return archive


def write_sha256sums(archive: Path, digest: str | None = None):
    """Set the archive's line of the SHA256SUMS beside it (other archives' lines are kept)."""
    digest = digest or hashlib.sha256(archive.read_bytes()).hexdigest()
    sums = archive.parent / "SHA256SUMS"
    lines = sums.read_text().splitlines() if sums.is_file() else []
    lines = [line for line in lines if line.split()[-1:] != [archive.name]]
    sums.write_text("".join(f"{line}\n" for line in [*lines, f"{digest}  {archive.name}"]))


def write_idx(path: Path, array: np.ndarray):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_fashion_mnist(folder: Path, n_train=12, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[split] = (images, labels)
    return out


def write_cifar100(folder: Path, n_train=10, n_test=5, seed=0):
    """The official python layout: cifar-100-python/{train,test,meta}, protocol-2 pickles."""
    rng = np.random.default_rng(seed)
    root = folder / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        batch = {b"data": data, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
        (root / split).write_bytes(pickle.dumps(batch, protocol=2))
        out[split] = (data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.array(fine, np.int32))
    meta = {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)]}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root, out


def write_svhn(folder: Path, split="train", n=7, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 10 stands for the digit 0
    savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    return x.transpose(3, 0, 1, 2), np.where(y[:, 0] == 10, 0, y[:, 0]).astype(np.int32)


def toy_scenes(n: int, size: int = 32, classes: int = 4, seed: int = 0, weakest: float = 0.55):
    """A learnable image task for end-to-end tests: class c lights quadrant c with a random strength
    in [weakest, 1]; the rest of the light goes to another quadrant, so that confidence (and a
    multi-exit net's exit) varies while the class's quadrant stays the brightest.
    Returns (uint8 images [n, size, size, 3], int32 labels)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.int32)
    images = rng.integers(0, 40, (n, size, size, 3)).astype(np.float64)
    half = size // 2
    strength = rng.uniform(weakest, 1.0, n)
    for i, y in enumerate(labels):
        other = (int(y) + rng.integers(1, classes)) % classes
        for quadrant, share in ((int(y), strength[i]), (int(other), 1 - strength[i])):
            r, c = divmod(quadrant, 2)
            images[i, r * half : (r + 1) * half, c * half : (c + 1) * half] += 180 * share
    return images.clip(0, 255).astype(np.uint8), labels


def write_arrays_folder(root: Path, split: str, images, labels, classes, suffix=".png"):
    """Write given images as <root>/<split>/<class>/<index><suffix> (an image-folder data set)."""
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}{suffix}")
