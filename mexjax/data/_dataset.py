"""The in-memory dataset record every loader returns, and the errors loaders raise."""

from __future__ import annotations

import dataclasses

import numpy as np


class DataError(Exception):
    """Base class of every data-layer error; messages name the problem and the fix."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset (or a part of it) is in none of the places searched."""


class CorruptDataError(DataError, ValueError):
    """An archive, file or cache is unreadable, truncated, or fails its checksum."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images with integer labels.

    Attributes:
      images: uint8[N, H, W, C], NHWC (may be a read-only memory map of a cache file).
      labels: int32[N], each in [0, len(class_names)).
      class_names: the name of every class, index = label.
      name, split: where the data came from (informative only).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = ""
    split: str = ""

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise TypeError(
                "Dataset.images must be a uint8 numpy array of shape [N, H, W, C]; got "
                f"{type(images).__name__} {getattr(images, 'dtype', '?')} "
                f"{getattr(images, 'shape', '?')}"
            )
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int32 or labels.ndim != 1:
            raise TypeError(
                "Dataset.labels must be an int32 numpy array of shape [N]; got "
                f"{type(labels).__name__} {getattr(labels, 'dtype', '?')} "
                f"{getattr(labels, 'shape', '?')}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels span [{labels.min()}, {labels.max()}] but there are "
                f"{len(self.class_names)} class names"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        where = f"{self.name}/{self.split}" if self.name else "Dataset"
        return f"<{where}: {len(self)} images {self.image_shape} uint8, {self.num_classes} classes>"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    def take(self, indices) -> Dataset:
        """A new dataset of the given rows (copied into memory)."""
        indices = np.asarray(indices)
        return dataclasses.replace(self, images=np.asarray(self.images[indices]), labels=self.labels[indices])

    def with_images(self, images: np.ndarray) -> Dataset:
        """The same labels with other images (e.g. converted to a victim's input shape)."""
        return dataclasses.replace(self, images=np.asarray(images, dtype=np.uint8))
