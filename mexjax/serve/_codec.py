"""The wire format of a served victim: what a request body may hold, and how it is checked.

Request bodies (the Content-Type says which):
- `application/x-npy`: one NumPy `.npy` array (no pickles), [N, H, W, C] or one image [H, W, C];
  uint8 in [0, 255] or float32 in [0, 1]; N <= the server's max_batch.
- `image/png`, `image/jpeg`: one image of exactly the victim's H x W (grayscale or RGB as the victim's
  channels; other modes are converted).
Every problem raises `RequestError` with the HTTP status to answer and a message saying what to fix.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image

NPY = "application/x-npy"
IMAGE_TYPES = ("image/png", "image/jpeg")


class RequestError(ValueError):
    """A bad request: `status` is the 4xx code to answer with, the message says what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def encode_npy(images: np.ndarray) -> bytes:
    """The body of an `application/x-npy` request."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(images), allow_pickle=False)
    return buffer.getvalue()


def decode(body: bytes, content_type: str, input_shape, max_batch: int) -> np.ndarray:
    """Checked images from a request body: u8[N, H, W, C] or f32[N, H, W, C] in [0, 1]."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == NPY:
        images = _decode_npy(body)
    elif kind in IMAGE_TYPES:
        images = _decode_image(body, kind, input_shape)
    else:
        raise RequestError(
            415,
            f"unsupported Content-Type {content_type!r}: send {NPY} (a .npy array) or one PNG/JPEG image",
        )
    return check_images(images, input_shape, max_batch)


def _decode_npy(body: bytes) -> np.ndarray:
    if not body.startswith(b"\x93NUMPY"):
        raise RequestError(
            400, "the body is not a .npy array (it lacks the .npy header): write it with np.save"
        )
    stream = io.BytesIO(body)
    try:  # the header first: a shape it declares must match the bytes sent (nothing is allocated)
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise RequestError(
            400, f"the body is not a readable .npy array (np.save, no pickles): {_clean(err)}"
        ) from err
    if dtype.hasobject:
        raise RequestError(400, "the .npy array holds Python objects: send uint8 or float32 numbers")
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize if shape else dtype.itemsize
    if declared != len(body) - stream.tell():
        raise RequestError(
            400,
            f"the .npy header declares shape {shape} of {dtype} ({declared} bytes) but "
            f"{len(body) - stream.tell()} bytes of data follow: write the array with np.save",
        )
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise RequestError(
            400, f"the body is not a readable .npy array (np.save, no pickles): {_clean(err)}"
        ) from err


def _clean(err: Exception) -> str:
    """An error's message without object addresses (nothing of the server's memory goes back)."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the body", str(err))


def _decode_image(body: bytes, kind: str, input_shape) -> np.ndarray:
    h, w, c = input_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body), formats=["PNG" if kind == "image/png" else "JPEG"])
            if image.size != (w, h):  # checked on the header, before decoding the pixels
                raise RequestError(
                    422, f"the image is {image.size[0]}x{image.size[1]}; this victim takes {w}x{h} images"
                )
            pixels = np.asarray(image.convert("L" if c == 1 else "RGB"))
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise RequestError(
            422, f"the image declares too many pixels; this victim takes {w}x{h} images"
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestError(400, f"the body is not a decodable {kind} image: {_clean(err)}") from err
    return pixels.reshape(1, h, w, c)


def check_images(images: np.ndarray, input_shape, max_batch: int) -> np.ndarray:
    """Shape, dtype, range and batch-size checks (the model's own checks, with HTTP statuses)."""
    shape = tuple(input_shape)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != shape:
        raise RequestError(
            422,
            f"expected images of shape [N, {', '.join(map(str, shape))}] (NHWC); got {list(images.shape)}",
        )
    if not 1 <= len(images) <= max_batch:
        raise RequestError(422, f"send between 1 and {max_batch} images per request; got {len(images)}")
    if images.dtype == np.uint8:
        return images
    if images.dtype != np.float32:
        raise RequestError(422, f"images must be uint8 in [0, 255] or float32 in [0, 1]; got {images.dtype}")
    if not np.isfinite(images).all():
        raise RequestError(422, "images contain NaN or infinite values")
    if images.min() < 0 or images.max() > 1:
        raise RequestError(
            422, f"float32 images must lie in [0, 1]; got [{images.min():.3g}, {images.max():.3g}]"
        )
    return images
