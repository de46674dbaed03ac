"""Datasets, query sets and on-device augmentation.

Public API:
Loading
  load(name, split, *, data_dir=None) -> Dataset     every named dataset, image folders by path, tfds
  NAMES                                              the named datasets (cifar10, gtsrb, tinyimagenet, ...)
  splits_of(name) -> tuple[str, ...]                 the splits a named dataset has
  Dataset                                            uint8 NHWC images, int32 labels, class names
  decode_image(bytes, where) -> uint8[H, W, C]       one encoded image file decoded
  data_dirs(data_dir=None) / cache_dir()             where datasets are looked for; the decode cache root
Errors and warnings (each message names the problem and the fix)
  DataError                                          base class of every data error
  DatasetNotFoundError                               a dataset (or part of it) is in no data dir
  CorruptDataError                                   unreadable, truncated, or failing its checksum
  CacheRebuildWarning                                a cache entry failed verification and is rebuilt
  MissingChecksumWarning                             an archive no SHA256SUMS lists, loaded unverified
Fitting images to a victim (pure functions; uint8 stays uint8)
  to_input_shape / to_channels / resize / pad_to     channels, then resize or pad to a model's (H, W, C)
  fit_to_input(images, shape) / fit_dataset(ds, shape)   pad or resize (chunked) as a victim reads them
  normalize(images, mean, std) / channel_stats(images)    uint8 -> standardized float32; per-channel stats
Query sets (pure functions of a jax.random key)
  noise_images(key, num, shape, kind="uniform")      uniform or Gaussian noise images, uint8
  permutation / split / subset                       deterministic order, parts, samples (per class too)
Batches
  batches(dataset, batch_size, key=None)             device-placed uint8 batches
  augment(key, images)                               random crop after zero padding + flip, inside jit
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
