"""Datasets, query sets and on-device augmentation.

Public API:
  load(name, split, *, data_dir=None) -> Dataset        every dataset mexjax knows, image folders, tfds
  Dataset                                                uint8 NHWC images, int32 labels, class names
  to_input_shape / to_channels / resize / pad_to         fit images to a victim's input shape
  fit_to_input(images, shape) / fit_dataset(ds, shape)   pad or resize (chunked) as a victim reads them
  splits_of(name) / decode_image(bytes, where)            a named dataset's splits; one image file decoded
  normalize / channel_stats                              value scaling
  noise_images / split / subset / permutation            query sets and deterministic subsets
  batches / augment                                      device batches; crop+flip inside jit
"""

from mexjax.data._batching import augment, batches
from mexjax.data._cache import CacheRebuildWarning
from mexjax.data._dataset import CorruptDataError, DataError, Dataset, DatasetNotFoundError
from mexjax.data._imagefolder import decode_image
from mexjax.data._load import NAMES, MissingChecksumWarning, load, splits_of
from mexjax.data._locate import cache_dir, data_dirs
from mexjax.data._queries import noise_images, permutation, split, subset
from mexjax.data._transforms import (
    channel_stats,
    fit_dataset,
    fit_to_input,
    normalize,
    pad_to,
    resize,
    to_channels,
    to_input_shape,
)

__all__ = [
    "NAMES",
    "CacheRebuildWarning",
    "CorruptDataError",
    "DataError",
    "Dataset",
    "DatasetNotFoundError",
    "MissingChecksumWarning",
    "augment",
    "batches",
    "cache_dir",
    "channel_stats",
    "data_dirs",
    "decode_image",
    "fit_dataset",
    "fit_to_input",
    "load",
    "noise_images",
    "normalize",
    "pad_to",
    "permutation",
    "resize",
    "split",
    "splits_of",
    "subset",
    "to_channels",
    "to_input_shape",
]
