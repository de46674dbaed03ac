"""Readers for the official file formats of FashionMNIST (idx), CIFAR-100 (pickles), SVHN (.mat).

These formats are quick to read, so they are parsed on every load instead of cached. Each reader
checks sizes and headers and raises CorruptDataError naming the file when they do not add up.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

from mexjax.data._dataset import CorruptDataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) -> its array (only the unsigned-byte type is used here)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise CorruptDataError(f"{path} is not a readable (gzipped) idx file: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{path} does not start with an unsigned-byte idx header")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise CorruptDataError(
            f"{path} holds {len(raw)} bytes but its header {shape} needs {expected}: "
            "the file is truncated or corrupt; reinstall it (apt-get install --reinstall "
            "dataset-fashion-mnist) or copy it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = FASHION_MNIST_FILES[split]
    images = read_idx(_with_optional_gz(folder / images_name))
    labels = read_idx(_with_optional_gz(folder / labels_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDataError(
            f"FashionMNIST {split} files in {folder} disagree: images {images.shape}, labels {labels.shape}"
        )
    return images[..., None].copy(), labels.astype(np.int32)


def _with_optional_gz(stem: Path) -> Path:
    gz = stem.with_name(stem.name + ".gz")
    return gz if gz.exists() else stem


# --- CIFAR-100 (python version): folder cifar-100-python/{train,test,meta} or its .tar.gz ---

_NUMPY_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a dataset file must not run code."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CorruptDataError(f"{where} is not a readable CIFAR pickle: {err}") from err
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{where} does not hold a dict as CIFAR pickles do")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar100(source: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """`source` is the cifar-100-python folder or the cifar-100-python.tar.gz archive."""
    if source.is_dir():
        blobs = {}
        for n in (split, "meta"):
            if not (source / n).is_file():
                raise CorruptDataError(f"{source} has no file {n!r}: the CIFAR-100 folder is incomplete")
            blobs[n] = (source / n).read_bytes()
    else:
        blobs = {}
        try:
            with tarfile.open(source) as tf:
                for n in (split, "meta"):
                    blobs[n] = tf.extractfile(f"cifar-100-python/{n}").read()
        except (tarfile.TarError, KeyError, EOFError, zlib.error, OSError) as err:
            raise CorruptDataError(f"cannot read {source}: {err}") from err
    batch = _unpickle(blobs[split], f"{source}/{split}")
    meta = _unpickle(blobs["meta"], f"{source}/meta")
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["fine_labels"], dtype=np.int32)
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["fine_label_names"])
    except KeyError as err:
        raise CorruptDataError(f"{source}: CIFAR-100 pickle lacks the key {err}") from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise CorruptDataError(
            f"{source}/{split}: data {data.shape} and labels {labels.shape} do not form "
            "N x 3072 images with N labels"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, labels, names


# --- SVHN (cropped digits): {train,test,extra}_32x32.mat ---


def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zlib.error) as err:
        raise CorruptDataError(f"{path} is not a readable SVHN .mat file: {err}") from err
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise CorruptDataError(f"{path}: X {x.shape} and y {y.shape} are not 32x32x3xN and N")
    labels = y.astype(np.int32)
    labels[labels == 10] = 0  # SVHN stores the digit 0 as class 10
    if labels.min() < 0 or labels.max() > 9:
        raise CorruptDataError(f"{path}: labels outside 1..10")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8), labels
