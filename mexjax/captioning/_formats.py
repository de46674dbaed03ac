"""Loaders for the published layouts of Flickr8k and COCO Captions, for users who have them on disk.

Images are squashed (not cropped) to image_size x image_size RGB: a crop could cut out what the
captions name. Captions are stored in the plain form of `normalize_caption` (lowercase, no
punctuation). A missing file raises DatasetNotFoundError and an unreadable one CorruptDataError
(both mexjax.data errors), each naming the file and the layout expected.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mexjax.captioning._dataset import CaptionSet
from mexjax.captioning._vocab import normalize_caption
from mexjax.data import CorruptDataError, DatasetNotFoundError

FLICKR8K_TOKENS = "Flickr8k.token.txt"
FLICKR8K_SPLITS = {
    "train": ("Flickr_8k.trainImages.txt",),
    "val": ("Flickr_8k.devImages.txt",),
    "test": ("Flickr_8k.testImages.txt",),
    "all": ("Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"),
}
FLICKR8K_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images")  # "Flicker": the official name
_FLICKR8K_TEXT_DIRS = (".", "Flickr8k_text")
_FLICKR8K_LAYOUT = (
    "root/Flickr8k.token.txt (lines 'image.jpg#k<TAB>caption'), root/Flickr_8k.{train,dev,test}Images.txt "
    "(both may instead be in root/Flickr8k_text/), and the images in root/Flicker8k_Dataset/ or root/Images/"
)
_COCO_LAYOUT = (
    "root/annotations/captions_<split><year>.json (a JSON object with 'images' and 'annotations' lists) and "
    "the images in root/<split><year>/"
)


def _check_options(image_size, limit) -> tuple[int, int | None]:
    if not isinstance(image_size, numbers.Integral) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be an integer >= 1 (pixels per side); got {image_size!r}")
    if limit is not None and (
        not isinstance(limit, numbers.Integral) or isinstance(limit, bool) or limit < 0
    ):
        raise ValueError(f"limit must be None or an integer >= 0; got {limit!r}")
    return int(image_size), None if limit is None else int(limit)


def _root(root) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path; got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path} is not a directory")
    return path


def load_image(path: Path, image_size: int) -> np.ndarray:
    """An image file -> uint8[image_size, image_size, 3] RGB, squashed to the square."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale, much faster
            image = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"image {path} is missing") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptDataError(
            f"cannot decode image {path}: {err}. Replace the file, then load again."
        ) from err


def _load_images(paths: list[Path], image_size: int, what: str) -> np.ndarray:
    images = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=what, leave=False, disable=len(paths) < 500)):
        images[i] = load_image(path, image_size)
    return images


def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CorruptDataError(f"{path} is not UTF-8 text: {err}") from err
    except OSError as err:
        raise CorruptDataError(f"cannot read {path}: {err}") from err


def _find(root: Path, dirs, name: str, layout: str) -> Path:
    for d in dirs:
        if (root / d / name).is_file():
            return root / d / name
    tried = ", ".join(str(root / d / name) for d in dirs)
    raise DatasetNotFoundError(f"{name} not found (looked for {tried}); expected the layout {layout}")


def read_flickr8k_tokens(path: Path) -> dict[str, list[str]]:
    """Flickr8k.token.txt -> {image file name: its captions in #k order, normalized}."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for lineno, line in enumerate(_read_text(path), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name, hash_, k = key.strip().rpartition("#")
        if not tab or not hash_ or not name or not k.isdigit():
            raise CorruptDataError(
                f"{path}:{lineno} is not 'image.jpg#k<TAB>caption' (k a number): {line[:80]!r}"
            )
        numbered.setdefault(name, []).append((int(k), normalize_caption(caption)))
    if not numbered:
        raise CorruptDataError(f"{path} holds no captions; expected lines 'image.jpg#k<TAB>caption'")
    return {name: [c for _, c in sorted(caps, key=lambda kc: kc[0])] for name, caps in numbered.items()}


def load_flickr8k(root, split: str = "train", *, image_size: int, limit: int | None = None) -> CaptionSet:
    """Flickr8k from its official files: 6000 train / 1000 val ("dev") / 1000 test images, 5 captions each.

    root holds Flickr8k.token.txt and Flickr_8k.{train,dev,test}Images.txt (directly or in
    Flickr8k_text/) and the images in Flicker8k_Dataset/ (the official spelling) or Images/.
    split: "train", "val" (or "dev"), "test", or "all" (the three lists in that order). Images come
    in the order of the split list; `limit` keeps the first ones (and reads only those).
    """
    image_size, limit = _check_options(image_size, limit)
    if split == "dev":
        split = "val"
    if split not in FLICKR8K_SPLITS:
        raise ValueError(f"split must be one of train, val (dev), test, all; got {split!r}")
    root = _root(root)
    tokens_path = _find(root, _FLICKR8K_TEXT_DIRS, FLICKR8K_TOKENS, _FLICKR8K_LAYOUT)
    names = []
    for list_name in FLICKR8K_SPLITS[split]:
        list_path = _find(root, _FLICKR8K_TEXT_DIRS, list_name, _FLICKR8K_LAYOUT)
        names += [line.strip() for line in _read_text(list_path) if line.strip()]
    if limit is not None:
        names = names[:limit]
    image_dir = next((root / d for d in FLICKR8K_IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        tried = ", ".join(str(root / d) for d in FLICKR8K_IMAGE_DIRS)
        raise DatasetNotFoundError(
            f"no Flickr8k image folder (looked for {tried}); expected {_FLICKR8K_LAYOUT}"
        )
    captions = read_flickr8k_tokens(tokens_path)
    missing = [n for n in names if n not in captions]
    if missing:
        raise CorruptDataError(
            f"{tokens_path} has no caption for {len(missing)} image(s) of the {split} list, "
            f"e.g. {missing[0]}: the token file and the split lists come from different copies of Flickr8k"
        )
    return CaptionSet(
        images=_load_images([image_dir / n for n in names], image_size, f"flickr8k {split}"),
        captions=[captions[n] for n in names],
        image_ids=tuple(names),
        name="flickr8k",
        split=split,
    )


def _coco_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"{path} is not valid JSON ({err}); copy the annotation file again") from err
    except OSError as err:
        raise CorruptDataError(f"cannot read {path}: {err}") from err
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("annotations"), list)
    ):
        raise CorruptDataError(
            f"{path} is not a COCO captions file: expected a JSON object with 'images' and "
            "'annotations' lists"
        )
    return doc


def read_coco_captions(path: Path) -> list[tuple[int, str, list[str]]]:
    """captions_<split><year>.json -> (image id, file name, normalized captions), by increasing id.

    Images without any caption are left out.
    """
    doc = _coco_json(path)
    files = {}
    for i, image in enumerate(doc["images"]):
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("id"), int)
            or not isinstance(image.get("file_name"), str)
        ):
            raise CorruptDataError(f"{path}: images[{i}] needs an integer 'id' and a string 'file_name'")
        files[image["id"]] = image["file_name"]
    captions: dict[int, list[str]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if (
            not isinstance(ann, dict)
            or not isinstance(ann.get("image_id"), int)
            or not isinstance(ann.get("caption"), str)
        ):
            raise CorruptDataError(
                f"{path}: annotations[{i}] needs an integer 'image_id' and a string 'caption'"
            )
        if ann["image_id"] not in files:
            raise CorruptDataError(
                f"{path}: annotations[{i}] names image_id {ann['image_id']}, which is not in 'images'"
            )
        captions.setdefault(ann["image_id"], []).append(normalize_caption(ann["caption"]))
    if not captions:
        raise CorruptDataError(f"{path} holds no captions (COCO's test splits have none: use train or val)")
    return [(i, files[i], captions[i]) for i in sorted(captions)]


def load_coco(
    root, split: str = "train", *, image_size: int, year: int | None = None, limit: int | None = None
) -> CaptionSet:
    """COCO Captions (2014 or 2017) from its official annotation file and image folder.

    root holds annotations/captions_<split><year>.json and the images in <split><year>/.
    split: "train" or "val". year: 2014, 2017, or None for whichever of the two is present.
    Images come by increasing COCO id, each with all its captions (usually 5); `limit` keeps the
    first ones (and reads only those).
    """
    image_size, limit = _check_options(image_size, limit)
    if split not in ("train", "val"):
        raise ValueError(
            f"split must be 'train' or 'val' (COCO's test images have no captions); got {split!r}"
        )
    if year not in (None, 2014, 2017):
        raise ValueError(f"year must be 2014, 2017 or None (whichever is present); got {year!r}")
    root = _root(root)
    years = (2014, 2017) if year is None else (year,)
    found = [y for y in years if (root / "annotations" / f"captions_{split}{y}.json").is_file()]
    if not found:
        tried = ", ".join(str(root / "annotations" / f"captions_{split}{y}.json") for y in years)
        raise DatasetNotFoundError(
            f"no COCO caption annotations (looked for {tried}); expected {_COCO_LAYOUT}"
        )
    if len(found) > 1:
        raise ValueError(
            f"{root} holds both COCO 2014 and 2017 {split} captions: pass year=2014 or year=2017"
        )
    year = found[0]
    image_dir = root / f"{split}{year}"
    if not image_dir.is_dir():
        raise DatasetNotFoundError(f"COCO image folder {image_dir} is missing; expected {_COCO_LAYOUT}")
    records = read_coco_captions(root / "annotations" / f"captions_{split}{year}.json")
    if limit is not None:
        records = records[:limit]
    return CaptionSet(
        images=_load_images([image_dir / f for _, f, _ in records], image_size, f"coco{year} {split}"),
        captions=[c for _, _, c in records],
        image_ids=tuple(f for _, f, _ in records),
        name=f"coco{year}",
        split=split,
    )
