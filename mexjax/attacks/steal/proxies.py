"""Proxy images for few-call stealing: images made (or chosen) for each victim class.

A proxy set is a `data.Dataset` whose label is the class each image was made for (the prompt class of
a diffusion model, in the paper) and whose class names are the victim's. Three sources:

- `folder_proxies`: an image folder `<root>/<class>/<image>` (what a user with a generator brings);
- `callable_proxies`: any Python callable `make(class_index, n, key) -> images`;
- `pool_proxies`: the offline default, natural images of a labelled pool (TinyImageNet) whose classes
  are mapped to the victim's by a documented table (`TINYIMAGENET_FOR_CIFAR10`). No weights, no downloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from mexjax import data

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# CIFAR-10 class -> TinyImageNet-200 WordNet ids of the nearest concepts (names from WordNet 3.0).
# TinyImageNet has no aircraft, deer or horse: those classes get the closest shapes it has, which makes
# them the weakest proxies (a diffusion model prompted with the class name would do better).
TINYIMAGENET_FOR_CIFAR10: dict[str, tuple[str, ...]] = {
    "airplane": ("n04008634",),  # projectile (missiles, mostly against the sky)
    "automobile": ("n02814533", "n03100240", "n03670208", "n04285008"),  # beach wagon, convertible,
    # limousine, sports car
    "bird": (
        "n01855672",
        "n02002724",
        "n02058221",
        "n02056570",
    ),  # goose, black stork, albatross, king penguin
    "cat": ("n02123045", "n02123394", "n02124075"),  # tabby, Persian cat, Egyptian cat
    "deer": ("n02423022", "n02415577"),  # gazelle, bighorn
    "dog": ("n02085620", "n02094433", "n02099601", "n02099712", "n02106662", "n02113799"),  # Chihuahua,
    # Yorkshire terrier, golden retriever, Labrador retriever, German shepherd, standard poodle
    "frog": ("n01641577", "n01644900"),  # bullfrog, tailed frog
    "horse": ("n02437312", "n02403003"),  # Arabian camel, ox
    "ship": ("n03662601", "n03447447"),  # lifeboat, gondola
    "truck": ("n03796401", "n03977966", "n04465501"),  # moving van, police van, tractor
}


def _class_index(folder: str, class_names: tuple[str, ...]) -> int | None:
    lowered = [c.lower() for c in class_names]
    if folder.lower() in lowered:
        return lowered.index(folder.lower())
    if folder.isdigit() and int(folder) < len(class_names):
        return int(folder)
    return None


def folder_proxies(root: str | Path, class_names, *, size: tuple[int, int] | None = None) -> data.Dataset:
    """Proxies from `<root>/<class>/<image>`; a class folder is named after a victim class (any case)
    or its index. Images are resized to `size` (default: the first image's) with Pillow."""
    root, class_names = Path(root), tuple(str(c) for c in class_names)
    if not root.is_dir():
        raise FileNotFoundError(f"no proxy folder at {root}: it must hold one folder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if _class_index(p.name, class_names) is None]
    if unknown:
        raise ValueError(
            f"proxy classes do not match the victim's: folders {unknown} name no victim class; the victim's "
            f"classes are {list(class_names)} (name a folder after one of them, or its index)"
        )
    images, labels = [], []
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                image = data.decode_image(file.read_bytes(), str(file))
                size = size or image.shape[:2]
                if image.shape[:2] != tuple(size):
                    mode = "L" if image.shape[2] == 1 else "RGB"
                    resized = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
                    image = np.asarray(resized.resize((size[1], size[0]), Image.BILINEAR)).reshape(
                        *size, image.shape[2]
                    )
                images.append(image)
                labels.append(_class_index(folder.name, class_names))
    if not images:
        raise ValueError(f"the proxy folder {root} is empty: put images in <root>/<class>/ folders")
    channels = max(im.shape[2] for im in images)
    stacked = np.stack([np.repeat(im, channels // im.shape[2], axis=2) for im in images])
    return data.Dataset(stacked, np.asarray(labels, np.int32), class_names, name=f"proxies:{root.name}")


def callable_proxies(make: Callable, class_names, per_class: int, *, key: jax.Array) -> data.Dataset:
    """Proxies from `make(class_index, n, key) -> images [n, H, W, C]` (uint8, or float in [0, 1])."""
    class_names = tuple(str(c) for c in class_names)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    images = []
    for c, sub in enumerate(jax.random.split(key, len(class_names))):
        made = np.asarray(make(c, per_class, sub))
        if made.ndim != 4 or len(made) != per_class:
            raise ValueError(
                f"the proxy callable returned shape {made.shape} for class {c}; "
                f"expected [{per_class}, H, W, C]"
            )
        if made.dtype != np.uint8:
            if not np.issubdtype(made.dtype, np.floating) or not np.all(np.isfinite(made)):
                raise ValueError("the proxy callable must return uint8 images or finite floats in [0, 1]")
            made = np.clip(np.round(made * 255.0), 0, 255).astype(np.uint8)
        images.append(made)
    if len({im.shape[1:] for im in images}) > 1:
        raise ValueError("the proxy callable returned images of different shapes for different classes")
    labels = np.repeat(np.arange(len(class_names), dtype=np.int32), per_class)
    return data.Dataset(np.concatenate(images), labels, class_names, name="proxies:callable")


def pool_proxies(
    pool: data.Dataset,
    class_names,
    mapping: Mapping[str, tuple[str, ...]] = TINYIMAGENET_FOR_CIFAR10,
    *,
    per_class: int | None = None,
    key: jax.Array | None = None,
) -> data.Dataset:
    """Natural proxies: the pool's images of the classes `mapping` assigns to each victim class.

    per_class: images kept per victim class (default: as many as the smallest class has, so the set
    is balanced), drawn at random with `key`."""
    class_names = tuple(str(c) for c in class_names)
    missing = [c for c in class_names if c not in mapping]
    if missing:
        raise ValueError(f"the proxy mapping names no pool classes for victim classes {missing}")
    where = {name: i for i, name in enumerate(pool.class_names)}
    absent = sorted({w for c in class_names for w in mapping[c] if w not in where})
    if absent:
        raise ValueError(f"the pool lacks the mapped classes {absent}: use the pool the mapping was made for")
    members = [np.flatnonzero(np.isin(pool.labels, [where[w] for w in mapping[c]])) for c in class_names]
    smallest = min(len(m) for m in members)
    per_class = smallest if per_class is None else per_class
    if per_class > smallest:
        raise ValueError(f"per_class={per_class} but the pool has only {smallest} images for one class")
    keys = jax.random.split(key if key is not None else jax.random.key(0), len(members))
    chosen = [np.sort(m[data.permutation(k, len(m))[:per_class]]) for m, k in zip(members, keys, strict=True)]
    labels = np.repeat(np.arange(len(class_names), dtype=np.int32), per_class)
    images = np.asarray(pool.images)[np.concatenate(chosen)]
    return data.Dataset(images, labels, class_names, name=f"proxies:{pool.name or 'pool'}")


def check_proxies(
    proxies: data.Dataset, num_classes: int, calls_per_class: int, *, max_imbalance=4.0
) -> None:
    """Refuse proxy sets the attack cannot spend its budget on: a victim class without proxies or with
    fewer than `calls_per_class`, a class count different from the victim's, or classes whose sizes
    differ by more than `max_imbalance` times (the per-class budget would be spent very unevenly)."""
    if proxies.num_classes != num_classes:
        raise ValueError(
            f"the proxies have {proxies.num_classes} classes but the victim answers {num_classes}: "
            "proxy classes must be the victim's"
        )
    counts = np.bincount(proxies.labels, minlength=num_classes)
    short = [
        f"{proxies.class_names[c]} ({counts[c]})" for c in range(num_classes) if counts[c] < calls_per_class
    ]
    if short:
        raise ValueError(
            f"proxy classes with fewer images than the {calls_per_class} calls per class: "
            f"{', '.join(short)}; add proxies for them or lower calls_per_class"
        )
    if counts.max() > max_imbalance * counts.min():
        raise ValueError(
            f"the proxy set is unbalanced ({counts.min()} to {counts.max()} images per class): balance it "
            "with steal.balance_proxies(proxies, key) or raise max_imbalance"
        )


def balance_proxies(proxies: data.Dataset, key: jax.Array, per_class: int | None = None) -> data.Dataset:
    """The same number of proxies for every class (default: the smallest class's), drawn at random."""
    counts = np.bincount(proxies.labels, minlength=proxies.num_classes)
    return data.subset(proxies, key, int(per_class or counts.min()), per_class=True)
