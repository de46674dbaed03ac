"""The in-memory record of a captioning dataset, and its deterministic train/val/test split."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class CaptionSet:
    """Images, each with one or more reference captions.

    Several references per image are kept because BLEU scores a generated caption against all of
    them; a model usually trains on one (e.g. `captions[i][0]`) or samples among them.

    Attributes:
      images: uint8[N, H, W, 3], NHWC RGB.
      captions: one list per image of its reference captions, each a plain lowercase string of
        words separated by single spaces (no punctuation); at least one per image.
      image_ids: file name (or other id) of every image, or () when the images have none.
      name, split: where the data came from (informative only).
    """

    images: np.ndarray
    captions: list[list[str]]
    image_ids: tuple[str, ...] = ()
    name: str = ""
    split: str = ""

    def __post_init__(self):
        images = self.images
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[-1] != 3
        ):
            raise TypeError(
                "CaptionSet.images must be a uint8 numpy array of shape [N, H, W, 3]; got "
                f"{type(images).__name__} {getattr(images, 'dtype', '?')} {getattr(images, 'shape', '?')}"
            )
        captions = self.captions
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise TypeError(
                f"CaptionSet.captions must be a list (one entry per image) of lists of strings; got "
                f"{type(captions).__name__}"
            )
        checked = []
        for i, refs in enumerate(captions):
            if isinstance(refs, str) or not isinstance(refs, Sequence):
                raise TypeError(
                    f"CaptionSet.captions[{i}] must be a list of caption strings (wrap a single "
                    f"caption as [caption]); got {type(refs).__name__}"
                )
            if not refs:
                raise ValueError(f"CaptionSet.captions[{i}] is empty: every image needs a caption")
            for ref in refs:
                if not isinstance(ref, str):
                    raise TypeError(f"CaptionSet.captions[{i}] must hold strings; got {type(ref).__name__}")
            checked.append(list(refs))
        if len(checked) != len(images):
            raise ValueError(f"{len(images)} images but {len(checked)} caption lists")
        object.__setattr__(self, "captions", checked)
        ids = tuple(str(i) for i in self.image_ids)
        if ids and len(ids) != len(images):
            raise ValueError(f"{len(images)} images but {len(ids)} image ids (pass all or none)")
        object.__setattr__(self, "image_ids", ids)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        where = f"{self.name}/{self.split}" if self.name else "CaptionSet"
        refs = sum(len(c) for c in self.captions)
        return f"<{where}: {len(self)} images {self.image_shape} uint8, {refs} captions>"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of one image."""
        return tuple(self.images.shape[1:])

    def take(self, indices) -> CaptionSet:
        """A new set of the given rows, in the given order (images copied into memory)."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise TypeError(f"take needs a 1-D array of integer indices; got {indices.dtype} {indices.shape}")
        indices = indices.astype(np.int64)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"indices span [{indices.min()}, {indices.max()}] but the set has {len(self)}")
        return dataclasses.replace(
            self,
            images=np.asarray(self.images[indices]),
            captions=[list(self.captions[i]) for i in indices],
            image_ids=tuple(self.image_ids[i] for i in indices) if self.image_ids else (),
        )

    def splits(
        self, fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
    ) -> tuple[CaptionSet, ...]:
        """Same as `split_captions(self, fractions, seed=seed)`."""
        return split_captions(self, fractions, seed=seed)


def split_captions(
    cset: CaptionSet, fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> tuple[CaptionSet, ...]:
    """Disjoint random parts of `cset` (e.g. train/val/test), one per fraction, together all of it.

    Images are shuffled with `seed`, then cut at the rounded cumulative fractions, so the sizes
    always sum to len(cset) and the same seed gives the same parts. Splitting by image (not by
    caption) keeps every reference of a test image out of training. Each part's `split` is set to
    train/val/test when there are three fractions (part0, part1, ... otherwise).
    """
    if not isinstance(cset, CaptionSet):
        raise TypeError(f"split_captions needs a CaptionSet; got {type(cset).__name__}")
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise TypeError(
            f"fractions must be a non-empty sequence of numbers, e.g. (0.8, 0.1, 0.1); got {fractions!r}"
        )
    fracs = []
    for f in fractions:
        if not isinstance(f, numbers.Real) or isinstance(f, bool) or not math.isfinite(f) or f < 0:
            raise ValueError(f"fractions must be finite numbers >= 0; got {list(fractions)}")
        fracs.append(float(f))
    if not math.isclose(sum(fracs), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1; got {list(fractions)} (sum {sum(fracs):g})")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    n = len(cset)
    order = np.random.default_rng(int(seed)).permutation(n)
    cuts = [0] + [round(c * n) for c in np.cumsum(fracs)[:-1]] + [n]
    names = ("train", "val", "test") if len(fracs) == 3 else tuple(f"part{i}" for i in range(len(fracs)))
    return tuple(
        dataclasses.replace(cset.take(order[lo:hi]), split=name)
        for lo, hi, name in zip(cuts[:-1], cuts[1:], names, strict=True)
    )
