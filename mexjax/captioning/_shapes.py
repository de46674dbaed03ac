"""A generated captioning task whose caption length follows the image: coloured shapes on a grid.

Every image shows 1..max_objects shapes, each in its own cell of a 2x2 grid (3x3 when
max_objects > 4), and its caption names every shape with its colour and cell:

  "a red circle top left and a blue square bottom right"

One object takes 5 words and each further one 6 more ("and a <colour> <shape> <row> <column>"), so
with 2x2 cells captions have 5, 11, 17 or 23 words; on a 3x3 grid the centre cell is the one-word
"center". The number of objects is drawn uniformly, so lengths spread evenly: a captioner trained
on it has to read the image to know when to stop, which is what a length (slowdown) attack targets.

Every image gets three reference captions naming the same objects in different orders: reading
order (row by row, left to right; the canonical one, captions[i][0]), the reverse of it, and
column by column. With one object the three are the same string.
"""

from __future__ import annotations

import numbers

import numpy as np
from PIL import Image, ImageDraw

from mexjax.captioning._dataset import CaptionSet

SHAPE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 90, 235),
    "yellow": (235, 215, 30),
    "white": (240, 240, 240),
}
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle")
MAX_OBJECTS = 9
MIN_CELL = 8  # pixels: smaller cells leave shapes too few pixels to tell a circle from a square
_ROWS = {2: ("top", "bottom"), 3: ("top", "middle", "bottom")}
_COLUMNS = {2: ("left", "right"), 3: ("left", "center", "right")}


def shapes_grid(max_objects: int) -> int:
    """Cells per side of the grid the objects sit in: 2 up to four objects, else 3."""
    _check_int("max_objects", max_objects, 1, MAX_OBJECTS)
    return 2 if max_objects <= 4 else 3


def cell_name(row: int, column: int, grid: int) -> str:
    """The words naming a cell, e.g. "top left"; the middle cell of a 3x3 grid is "center"."""
    if grid == 3 and row == 1 and column == 1:
        return "center"
    return f"{_ROWS[grid][row]} {_COLUMNS[grid][column]}"


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bounds}; got {value}")
    return int(value)


def _caption(objects: list[tuple[int, str, str]], grid: int) -> str:
    """objects: (cell index, colour, kind), in the order the caption names them."""
    return " and ".join(
        f"a {colour} {kind} {cell_name(cell // grid, cell % grid, grid)}" for cell, colour, kind in objects
    )


def _draw(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], colour) -> None:
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:  # an upward triangle filling the box
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=colour)


def _scene(rng: np.random.Generator, image_size: int, max_objects: int, grid: int):
    cell = image_size // grid
    level = int(rng.integers(15, 60))  # a dark grey that differs per image, with pixel noise
    background = level + rng.integers(-6, 7, size=(image_size, image_size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    count = int(rng.integers(1, max_objects + 1))
    cells = sorted(int(c) for c in rng.choice(grid * grid, size=count, replace=False))
    colours = tuple(SHAPE_COLORS)
    objects = []
    for c in cells:
        colour = colours[int(rng.integers(len(colours)))]
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        # Side between half the cell and the cell less a 1-pixel margin, anywhere inside the cell, so
        # shapes vary in size and place but never touch a neighbouring cell.
        side = int(rng.integers(cell // 2, cell - 1))
        dx, dy = (int(v) for v in rng.integers(1, cell - side, size=2))
        x0, y0 = (c % grid) * cell + dx, (c // grid) * cell + dy
        _draw(draw, kind, (x0, y0, x0 + side - 1, y0 + side - 1), SHAPE_COLORS[colour])
        objects.append((c, colour, kind))
    return np.asarray(image), objects


def shapes_dataset(n: int, *, image_size: int = 32, max_objects: int = 4, seed: int = 0) -> CaptionSet:
    """`n` generated images (uint8[n, image_size, image_size, 3]) with three reference captions each.

    See the module docstring for the scene and caption grammar. Image i depends only on (seed, i),
    so shapes_dataset(100, seed=s) starts with the 10 images of shapes_dataset(10, seed=s). Needs
    image_size >= 8 * cells per side (16 for max_objects <= 4, 24 above) for recognisable shapes.
    """
    n = _check_int("n", n, 0)
    max_objects = _check_int("max_objects", max_objects, 1, MAX_OBJECTS)
    image_size = _check_int("image_size", image_size, 1)
    seed = _check_int("seed", seed, 0)
    grid = shapes_grid(max_objects)
    if image_size < MIN_CELL * grid:
        raise ValueError(
            f"image_size={image_size} is too small for a {grid}x{grid} grid (max_objects={max_objects}): "
            f"each cell needs >= {MIN_CELL} pixels, so use image_size >= {MIN_CELL * grid}"
        )
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        images[i], objects = _scene(np.random.default_rng([seed, i]), image_size, max_objects, grid)
        by_column = sorted(objects, key=lambda o: (o[0] % grid, o[0] // grid))
        captions.append([_caption(objects, grid), _caption(objects[::-1], grid), _caption(by_column, grid)])
    return CaptionSet(
        images=images,
        captions=captions,
        image_ids=tuple(f"shapes-{seed}-{i}" for i in range(n)),
        name="shapes",
        split="all",
    )
