"""Adapter for datasets prepared with tensorflow-datasets (optional dependency, never downloads)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from mexjax.data._dataset import DataError, Dataset, DatasetNotFoundError


def available() -> bool:
    return importlib.util.find_spec("tensorflow_datasets") is not None


def load(name: str, split: str, *, data_dir=None) -> Dataset:
    """Read a prepared tfds dataset with `download=False`: nothing is fetched at run time."""
    if not available():
        raise DataError(f"tfds dataset {name!r} needs tensorflow-datasets: pip install 'mexjax[tfds]'")
    import tensorflow_datasets as tfds

    tfds_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=str(tfds_dir))
    except Exception as err:  # tfds raises its own DatasetNotFoundError and others
        raise DatasetNotFoundError(
            f"tensorflow-datasets does not know {name!r} ({err}); check the name"
        ) from err
    if not Path(builder.data_dir).is_dir():
        raise DatasetNotFoundError(
            f"tfds dataset {name!r} is not prepared in {tfds_dir}: run "
            f"`tfds build {name} --data_dir {tfds_dir}` where there is internet, then copy it here."
        )
    if split not in builder.info.splits:
        raise DataError(f"tfds {name} has no split {split!r}; its splits are {list(builder.info.splits)}")
    images, labels = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    label_feature = builder.info.features["label"]
    names = tuple(label_feature.names) if hasattr(label_feature, "names") else ()
    if not names:
        names = tuple(str(i) for i in range(int(np.max(labels)) + 1))
    return Dataset(images, np.asarray(labels, dtype=np.int32), names, name, split)
