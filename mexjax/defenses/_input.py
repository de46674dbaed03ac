"""Input transforms that undo small perturbations before the victim sees them (SoK, METHODS §4).

Pure functions: images in, images out, same dtype and shape (uint8 [0, 255] or float32 [0, 1], NHWC),
so a defended pipeline is `victim(transform(x))`. The codecs are host-side (Pillow, OpenCV); they are
not differentiable, which is why an adaptive attacker goes around them (e.g. by a straight-through
approximation) rather than through them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _as_uint8(images) -> tuple[np.ndarray, bool]:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W, 1 or 3] (NHWC); got shape {x.shape}")
    if x.dtype == np.uint8:
        return x, False
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [0, 1]; got {x.dtype}")
    if np.isnan(x).any() or x.min() < 0 or x.max() > 1:
        raise ValueError("float images must be in [0, 1] without NaN (pass them before normalization)")
    return np.round(x * 255.0).astype(np.uint8), True


def _back(x: np.ndarray, was_float: bool) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if was_float else x


def jpeg(images, quality: int = 90) -> np.ndarray:
    """JPEG re-compression at `quality` (1-95) through Pillow."""
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality must be in 1..95; got {quality}")
    x, was_float = _as_uint8(images)
    out = np.empty_like(x)
    mode = "L" if x.shape[-1] == 1 else "RGB"
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if mode == "L" else image, mode).save(
            buffer, "JPEG", quality=int(quality)
        )
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(mode))
        out[i] = decoded[..., None] if mode == "L" else decoded
    return _back(out, was_float)


def smooth(images, h: float = 10.0, patch: int = 7, search: int = 21) -> np.ndarray:
    """Spatial smoothing by non-local means (OpenCV): filter strength h (pixel units), patch and
    search windows (odd sizes). The SoK's setting is h = 10, patch 7, search 21."""
    import cv2

    if h <= 0 or patch < 1 or search < patch or patch % 2 == 0 or search % 2 == 0:
        raise ValueError(f"need h > 0 and odd windows with search >= patch; got h={h}, {patch}, {search}")
    x, was_float = _as_uint8(images)
    out = np.empty_like(x)
    for i, image in enumerate(x):
        if x.shape[-1] == 1:
            out[i, ..., 0] = cv2.fastNlMeansDenoising(
                np.ascontiguousarray(image[..., 0]), None, h, patch, search
            )
        else:
            bgr = np.ascontiguousarray(image[..., ::-1])  # OpenCV's colour order
            out[i] = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, patch, search)[..., ::-1]
    return _back(out, was_float)
